"""A scripted day of admin actions, from the command line and over HTTP, read back from the
audit log: each action once, with its actor and outcome; the same entries from ``GET
/audit`` page by page and from ``audit export``."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tenantry.api.app import create_app
from tenantry.operations.dispatch import InProcessDispatcher
from tenantry.services.audit import cli_actor
from tenantry.settings import load_settings
from tests.cli.conftest import Invoke, as_json


def _ok(result: Any) -> Any:
    assert result.exit_code == 0, result.output
    return as_json(result)


@pytest.fixture
def http(cli: Invoke) -> Iterator[TestClient]:
    """The API of the installation the ``cli`` fixture runs on (initialised here)."""
    assert cli("init").exit_code == 0
    settings = load_settings()
    dispatcher = InProcessDispatcher(settings)
    with TestClient(create_app(settings, dispatcher=dispatcher)) as client:
        yield client
    dispatcher.close()


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_a_day_of_actions_is_in_the_audit_log_once_each(
    cli: Invoke, http: TestClient, tmp_path: Path
) -> None:
    me = cli_actor()
    admin = _ok(cli("apikeys", "create", "--admin", "--name", "ops", "--json"))
    app_key = _ok(cli("apikeys", "create", "--app", "acme", "--name", "acme", "--json"))
    spare = _ok(cli("apikeys", "create", "--admin", "--name", "spare", "--json"))
    admin_actor, app_actor = f"key:{admin['prefix']}", f"key:{app_key['prefix']}"

    _ok(cli("stores", "create", "day-shop", "--name", "Day Shop", "--json"))
    assert cli("provision", "day-shop", "--new", "--inline", "--wait").exit_code == 0
    _ok(cli("db", "migrate", "--role", "master", "--json"))
    assert cli("fleet", "migrate", "--json").exit_code == 0
    backup = _ok(cli("backup", "run", "--db", "billing", "--json"))
    _ok(cli("restore", backup["id"], "--in-place", "--confirm", backup["database"], "--json"))
    _ok(cli("apikeys", "revoke", spare["prefix"], "--json"))
    missing = cli("apikeys", "revoke", "tk_nosuchkey", "--json")  # a refused action
    assert missing.exit_code != 0

    suspended = http.post("/stores/day-shop/suspend", headers=_bearer(admin["key"]))
    assert suspended.status_code == 200, suspended.text
    acme = _bearer(app_key["key"])
    customer = http.post("/billing/customers", headers=acme, json={"external_customer_id": "c1"})
    assert customer.status_code == 201, customer.text
    cid = customer.json()["id"]
    plan = {"code": "pro", "name": "Pro", "amount_minor": 2900, "currency": "usd"}
    assert http.post("/billing/plans", headers=acme, json=plan).status_code == 201
    sub = http.post(
        "/billing/subscriptions", headers=acme, json={"customer_id": cid, "plan_code": "pro"}
    ).json()
    cancel = {"at_period_end": False}
    subs = f"/billing/subscriptions/{sub['id']}"
    assert http.post(f"{subs}/cancel", headers=acme, json=cancel).status_code == 200
    revive = http.post(f"{subs}/transition", headers=acme, json={"status": "active"})
    assert revive.status_code == 409  # a failed (refused) billing change
    invoice = http.post(
        "/billing/invoices",
        headers=acme,
        json={"customer_id": cid, "invoice_number": "INV-1", "currency": "USD", "amount_minor": 5},
    ).json()
    voided = http.post(
        f"/billing/invoices/{invoice['id']}/status", headers=acme, json={"status": "open"}
    )
    assert voided.status_code == 200, voided.text

    log = _ok(cli("audit", "list", "--limit", "1000", "--json"))
    seen = Counter((e["action"], e["actor"], e["outcome"], e["target_id"]) for e in log)
    expected = {
        ("apikey.create", me, "succeeded", admin["prefix"]),
        ("apikey.create", me, "succeeded", app_key["prefix"]),
        ("apikey.create", me, "succeeded", spare["prefix"]),
        ("store.create", me, "succeeded", "day-shop"),
        ("store.provisioned", "worker", "succeeded", "day-shop"),
        ("fleet.migrate", me, "succeeded", None),
        ("backup.run", me, "succeeded", backup["id"]),
        ("backup.restored", me, "succeeded", backup["database"]),
        ("apikey.revoke", me, "succeeded", spare["prefix"]),
        ("apikey.revoke", me, "refused", "tk_nosuchkey"),
        ("store.suspend", admin_actor, "succeeded", "day-shop"),
        ("subscription.create", app_actor, "succeeded", sub["id"]),
        ("subscription.cancel", app_actor, "succeeded", sub["id"]),
        ("subscription.transition", app_actor, "refused", sub["id"]),
        ("invoice.create", app_actor, "succeeded", invoice["id"]),
        ("invoice.status", app_actor, "succeeded", invoice["id"]),
    }
    by_action = Counter(e["action"] for e in log)
    for action, actor, outcome, target in expected:
        if action == "fleet.migrate":  # its target is the run's id
            matches = [e for e in log if e["action"] == action]
            assert [(e["actor"], e["outcome"]) for e in matches] == [(actor, outcome)]
            continue
        assert seen[(action, actor, outcome, target)] == 1, (action, actor, outcome, target)
    assert by_action["db.migrate"] == 1
    migrated = next(e for e in log if e["action"] == "db.migrate")
    assert (migrated["actor"], migrated["outcome"], migrated["target_type"]) == (
        me,
        "succeeded",
        "master_database",
    )
    # each action once: nothing recorded twice (a backup's run, its restore's safety backup…)
    assert by_action["backup.run"] == 1
    assert by_action["store.suspend"] == 1
    assert by_action["subscription.transition"] == 1
    assert [e["created_at"] for e in log] == sorted((e["created_at"] for e in log), reverse=True)
    assert app_key["key"] not in json.dumps(log)  # no secret in the log

    # The same entries over HTTP, three at a time, and only for an admin key.
    assert http.get("/audit", headers=acme).status_code == 403
    pages: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = http.get("/audit", headers=_bearer(admin["key"]), params=params)
        assert page.status_code == 200, page.text
        pages += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert [e["id"] for e in pages] == [e["id"] for e in log]
    only = http.get(
        "/audit",
        headers=_bearer(admin["key"]),
        params={"actor": "key", "action": "subscription.*", "outcome": "refused"},
    ).json()["items"]
    assert [(e["action"], e["log"]) for e in only] == [("subscription.transition", "billing")]
    backwards = http.get(
        "/audit", headers=_bearer(admin["key"]), params={"since": "1d", "until": "2d"}
    )
    assert backwards.status_code == 422
    assert "since is after until" in backwards.json()["error"]["message"]

    # Export round-trips: the same documents, one a line.
    out = tmp_path / "audit.jsonl"
    assert cli("audit", "export", "--since", "1d", "--out", str(out)).exit_code == 0
    exported = [json.loads(line) for line in out.read_text().splitlines()]
    assert exported == log
    store_only = _ok(cli("audit", "list", "--store", "day-shop", "--json"))
    assert {e["action"] for e in store_only} >= {"store.create", "store.suspend"}
    assert all(e["log"] == "master" for e in store_only)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--since", "yesterday"), "--since 'yesterday' is neither a duration nor a date"),
        (("--since", "1d", "--until", "2d"), "since is after until"),
        (("--outcome", "maybe"), "--outcome 'maybe' is not an outcome"),
        (("--store", "Not A Slug!"), "is not a store slug or id"),
    ],
)
def test_bad_filters_are_clear_errors(cli: Invoke, args: tuple[str, ...], says: str) -> None:
    assert cli("init").exit_code == 0
    result = cli("audit", "list", *args)
    assert result.exit_code == 2
    assert says in result.stderr


def test_audit_prune_is_itself_audited(cli: Invoke) -> None:
    assert cli("init").exit_code == 0
    dry = _ok(cli("audit", "prune", "--dry-run", "--json"))
    assert (dry["dry_run"], dry["audit_logs"], dry["api_usage_logs"]) == (True, 0, 0)
    assert _ok(cli("audit", "list", "--action", "audit.*", "--json")) == []
    _ok(cli("audit", "prune", "--json"))
    entries = _ok(cli("audit", "list", "--action", "audit.prune", "--json"))
    assert [(e["actor"], e["outcome"]) for e in entries] == [(cli_actor(), "succeeded")]


def test_a_refused_migration_and_store_creation_leave_their_entries(cli: Invoke) -> None:
    assert cli("init").exit_code == 0
    _ok(cli("stores", "create", "taken", "--name", "Taken", "--json"))
    again = cli("stores", "create", "taken", "--name", "Again", "--json")
    assert again.exit_code != 0
    refused = cli("db", "migrate", "--role", "billing", "--as-app", "someone-else", "--json")
    assert refused.exit_code != 0
    log = _ok(cli("audit", "list", "--outcome", "refused", "--json"))
    assert sorted((e["action"], e["target_id"]) for e in log if e["action"] != "db.migrate") == [
        ("store.create", "taken")
    ]
    migrations = [e for e in log if e["action"] == "db.migrate"]
    assert [(e["actor"], e["target_type"]) for e in migrations] == [
        (cli_actor(), "billing_database")
    ]
    assert migrations[0]["details"]["error"]
