"""`tenantry apikeys create --admin --read-only`: a key that reads what an admin key reads
over HTTP and changes nothing; `apikeys list` says which keys are read-only."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tenantry.api.app import create_app
from tenantry.operations.dispatch import InProcessDispatcher
from tenantry.settings import load_settings
from tests.cli.conftest import Invoke, as_json


def test_a_read_only_admin_key_reads_and_is_refused_writes(cli: Invoke) -> None:
    assert cli("init").exit_code == 0
    assert cli("stores", "create", "ro-cli", "--name", "RO").exit_code == 0
    made = cli("apikeys", "create", "--admin", "--read-only", "--name", "audit", "--json")
    assert made.exit_code == 0, made.output
    doc = as_json(made)
    assert doc["read_only"] is True
    listed = {k["prefix"]: k for k in as_json(cli("apikeys", "list", "--json"))}
    assert listed[doc["prefix"]]["scope"] == "admin,read_only"
    settings = load_settings()
    dispatcher = InProcessDispatcher(settings)
    headers = {"Authorization": f"Bearer {doc['key']}"}
    try:
        with TestClient(create_app(settings, dispatcher=dispatcher)) as client:
            shown = client.get("/stores/ro-cli", headers=headers)
            assert shown.status_code == 200, shown.text
            renamed = client.patch("/stores/ro-cli", json={"name": "X"}, headers=headers)
            assert renamed.status_code == 403, renamed.text
            assert f"API key {doc['prefix']} is read-only" in renamed.json()["error"]["message"]
            assert client.get("/stores/ro-cli", headers=headers).json()["name"] == "RO"
    finally:
        dispatcher.close()
