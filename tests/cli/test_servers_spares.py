"""`tenantry servers show` lists a server's spare databases, `servers remove` drops them, and
`tenantry doctor` reports the pools (stale ones as a warning)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import update

from tenantry.db.master.models import SpareDatabase
from tenantry.operations import spare_pool
from tenantry.runtime import Platform
from tenantry.settings import load_settings
from tests.cli.conftest import Invoke, as_json
from tests.conftest import SERVER_URLS, require_server, server_has_database


@pytest.fixture(autouse=True)
def spares_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pool at its default bound (the test suite keeps it off elsewhere)."""
    monkeypatch.setenv("TENANTRY_SPARE_DATABASES", "2")


def _refill(bound: int | None = None) -> None:
    settings = load_settings()
    if bound is not None:
        settings = settings.model_copy(update={"spare_databases": bound})
    platform = Platform.open(settings)
    try:
        spare_pool.refill(platform.sessions, platform.box, settings, platform.tenant_spec)
    finally:
        platform.close()


def _doctor_check(cli: Invoke) -> dict[str, str]:
    result = cli("doctor", "--json")
    return next(c for c in as_json(result)["checks"] if c["name"] == "spare databases")


def test_show_lists_spares_and_remove_drops_them(cli: Invoke) -> None:
    require_server("postgresql")
    assert cli("init").exit_code == 0
    name = f"pg-{uuid.uuid4().hex[:6]}"
    added = cli("servers", "add", name, "--url", SERVER_URLS["postgresql"])
    assert added.exit_code == 0, added.output
    try:
        _refill()
        shown = cli("servers", "show", name, "--json")
        assert shown.exit_code == 0, shown.output
        pool = as_json(shown)["spares"]
        assert pool["ready"] == 2
        assert pool["stale"] == 0
        names = [d["name"] for d in pool["databases"]]
        assert all(server_has_database("postgresql", n) for n in names)
        text = cli("servers", "show", name, env={"COLUMNS": "200"})
        assert "2 ready of 2" in text.stdout
        assert _doctor_check(cli)["status"] == "ok"

        platform = Platform.open(load_settings())
        try:  # as if a new head revision came after they were cloned
            with platform.sessions.begin() as session:
                session.execute(update(SpareDatabase).values(template="tenantry_tpl_store_0000"))
        finally:
            platform.close()
        check = _doctor_check(cli)
        assert check["status"] == "warning"
        assert "stale" in check["evidence"]
        assert as_json(cli("servers", "show", name, "--json"))["spares"]["stale"] == 2

        removed = cli("servers", "remove", name, "--json")
        assert removed.exit_code == 0, removed.output
        assert as_json(removed)["spares_dropped"] == 2
        assert not any(server_has_database("postgresql", n) for n in names)
    finally:
        _refill(bound=0)  # the SQLite pool's (and, on a failure above, the server's)
        cli("servers", "remove", name)


def test_show_an_unknown_server_names_it(cli: Invoke) -> None:
    assert cli("init").exit_code == 0
    shown = cli("servers", "show", "nope")
    assert shown.exit_code != 0
    assert "nope" in shown.output
