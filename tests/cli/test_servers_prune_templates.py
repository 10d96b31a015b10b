"""``tenantry servers prune-templates``: stale template databases go (older revisions, builds
left half-way), the current one, other schemas' and those in use stay; on each backend."""

from __future__ import annotations

import os
import sqlite3
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from tenantry.db.admin import create_database, drop_database
from tenantry.db.builder import template_name
from tenantry.db.engines import make_engine
from tenantry.db.schemas import tenant_schema
from tenantry.db.urls import parse_url
from tenantry.settings import load_settings
from tests.cli.conftest import Invoke, as_json
from tests.conftest import SERVER_URLS, require_server, server_has_database


def _sqlite_file(path: Path) -> None:
    sqlite3.connect(path).close()


def _stale_check(cli: Invoke) -> dict[str, object]:
    result = cli("doctor", "--json")
    return next(c for c in as_json(result)["checks"] if c["name"] == "stale templates")


def test_prune_templates_in_the_sqlite_template_dir(cli: Invoke, tmp_path: Path) -> None:
    assert cli("init").exit_code == 0
    spec = tenant_schema(load_settings().tenant_schema)
    folder = tmp_path / "data" / "templates"
    folder.mkdir()
    current = f"{template_name(spec)}.db"
    names = {
        "current": current,
        "old": f"tenantry_tpl_{spec.name}_base.db",
        "left": "tmpk3x9q2.db",  # an interrupted build's temporary file, an hour old
        "building": "tmpbuild01.db",  # being built right now
        "other": "tenantry_tpl_someoneelse_0001.db",
    }
    for name in names.values():
        _sqlite_file(folder / name)
    hour_ago = time.time() - 3600
    os.utime(folder / names["left"], (hour_ago, hour_ago))

    check = _stale_check(cli)
    assert check["status"] == "warning"
    assert check["fix"] == "tenantry servers prune-templates"
    assert f"sqlite/{names['old']}" in str(check["evidence"])
    assert f"sqlite/{names['left']}" in str(check["evidence"])
    assert names["building"] not in str(check["evidence"])

    dry = cli("servers", "prune-templates", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    assert sorted(as_json(dry)["dropped"]) == sorted(
        [f"sqlite/{names['old']}", f"sqlite/{names['left']}"]
    )
    assert all((folder / n).exists() for n in names.values())

    done = cli("servers", "prune-templates", "--json")
    assert done.exit_code == 0, done.output
    doc = as_json(done)
    assert sorted(doc["dropped"]) == sorted([f"sqlite/{names['old']}", f"sqlite/{names['left']}"])
    assert doc["kept_in_use"] == [f"sqlite/{names['building']}"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [names["current"], names["building"], names["other"]]
    )
    assert _stale_check(cli)["status"] == "ok"
    audit = cli("audit", "list", "--json", "--action", "server.prune_templates")
    assert audit.exit_code == 0, audit.output
    assert len(as_json(audit)) == 1


@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
def test_prune_templates_on_a_registered_server(cli: Invoke, backend: str) -> None:
    require_server(backend)
    assert cli("init").exit_code == 0
    server = parse_url(SERVER_URLS[backend])
    added = cli("servers", "add", f"tpl-{backend[:2]}", "--url", SERVER_URLS[backend])
    assert added.exit_code == 0, added.output
    tag = uuid.uuid4().hex[:10]
    old = "tenantry_tpl_store_base"  # the store schema's template before its first revision
    left = f"tenantry_tpl_tmp_{tag}"
    busy = f"tenantry_tpl_tmp_{tag}b"
    other = f"tenantry_tpl_zz{tag}_0001"
    for name in (old, left, busy, other):
        create_database(server.set(database=name))
    holder = make_engine(server.set(database=busy), pool_size=1)
    try:
        with holder.connect() as conn:  # a build (or clone) running on ``busy``
            conn.execute(text("SELECT 1"))
            done = cli("servers", "prune-templates", "--json")
            assert done.exit_code == 0, done.output
            doc = as_json(done)
            where = f"tpl-{backend[:2]}"
            assert f"{where}/{old}" in doc["dropped"]
            assert f"{where}/{left}" in doc["dropped"]
            assert f"{where}/{busy}" in doc["kept_in_use"]
            assert f"{where}/{other}" not in doc["dropped"]
            assert not server_has_database(backend, old)
            assert not server_has_database(backend, left)
            assert server_has_database(backend, busy)
            assert server_has_database(backend, other)
        holder.dispose()
        again = cli("servers", "prune-templates", "--json")
        assert f"tpl-{backend[:2]}/{busy}" in as_json(again)["dropped"]
        assert not server_has_database(backend, busy)
    finally:
        holder.dispose()
        for name in (old, left, busy, other):
            drop_database(server.set(database=name))
