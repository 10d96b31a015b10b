"""``tenantry stores domains``: add, list, verify (over HTTP, against a local server), remove."""

from __future__ import annotations

import pytest

from tenantry.operations import domain_verify
from tests.cli.conftest import Invoke, as_json, cli
from tests.tenancy.token_server import token_server

__all__ = ["cli"]


def test_domains_lifecycle(cli: Invoke, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cli("init").exit_code == 0
    assert cli("stores", "create", "my-shop", "--name", "My Shop").exit_code == 0
    added = cli("stores", "domains", "add", "my-shop", "Shop.Example.COM", "--json")
    assert added.exit_code == 0, added.output
    doc = as_json(added)
    assert doc["host"] == "shop.example.com"
    assert doc["verified"] is False
    assert f"/.well-known/tenantry/{doc['token']}" in doc["how_to_verify"]

    taken = cli("stores", "domains", "add", "my-shop", "shop.example.com:443")
    assert taken.exit_code == 1
    assert "already claimed" in taken.output
    bad = cli("stores", "domains", "add", "my-shop", "not a host")
    assert bad.exit_code == 2
    assert "not a valid host name" in bad.output

    with token_server({}) as nowhere:
        monkeypatch.setattr(domain_verify, "system_address", nowhere)
        failed = cli("stores", "domains", "verify", "my-shop", "shop.example.com")
    assert failed.exit_code == 1
    assert "not verified" in failed.output
    with token_server({"shop.example.com": doc["token"]}) as local:
        monkeypatch.setattr(domain_verify, "system_address", local)
        verified = cli("stores", "domains", "verify", "my-shop", "shop.example.com", "--json")
    assert verified.exit_code == 0, verified.output
    assert as_json(verified)["method"] == "http"

    listed = as_json(cli("stores", "domains", "list", "my-shop", "--json"))
    assert [(d["host"], d["verified"]) for d in listed] == [("shop.example.com", True)]
    assert cli("stores", "domains", "remove", "my-shop", "shop.example.com").exit_code == 0
    assert as_json(cli("stores", "domains", "list", "my-shop", "--json")) == []
    missing = cli("stores", "domains", "remove", "my-shop", "shop.example.com")
    assert missing.exit_code == 1
    assert "has no domain" in missing.output
