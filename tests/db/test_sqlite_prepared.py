"""A SQLite tenant file made in memory: whole, in WAL mode and readable when it appears;
absent, with no temporary file left, when the preparation fails."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import Connection, select, text
from sqlalchemy.engine import URL

from tenantry.db import builder
from tenantry.db.engines import connect, make_engine
from tenantry.db.identity import read_identity
from tenantry.db.schemas import tenant_schema
from tenantry.db.sqlite_prepared import write_prepared_copy
from tenantry.db.tenant.store.models import Setting
from tenantry.services import tenant_setup

SPEC = tenant_schema("tenantry.db.tenant.store.plugin")


class _Store:
    id, name, slug = "00000000-0000-0000-0000-000000000001", "Prepared", "prepared"


def test_the_copy_appears_stamped_seeded_and_in_wal_mode(tmp_path: Path) -> None:
    template = builder.sqlite_template(tmp_path / "templates", SPEC)
    target = tmp_path / "tenants" / "prepared.db"

    def prepare(conn: Connection) -> str:
        return tenant_setup.stamp_and_seed_clone(conn, SPEC, "tenantry", _Store())  # type: ignore[arg-type]

    instance_id = write_prepared_copy(template, target, prepare)

    assert sorted(p.name for p in target.parent.iterdir()) == ["prepared.db"]  # no temp file
    raw = sqlite3.connect(target)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        raw.close()
    engine = make_engine(URL.create("sqlite+pysqlite", database=str(target)), pooled=False)
    try:
        with connect(engine) as conn:
            identity = read_identity(conn)
            assert identity is not None
            assert identity.instance_id == instance_id
            slug = conn.scalar(select(Setting.value).where(Setting.key == "store_slug"))
            assert slug == "prepared"
    finally:
        engine.dispose()
    # The template itself is untouched: no identity in it.
    raw = sqlite3.connect(template)
    try:
        assert raw.execute("SELECT COUNT(*) FROM tenantry_identity").fetchone()[0] == 0
    finally:
        raw.close()


def test_a_failed_preparation_leaves_nothing(tmp_path: Path) -> None:
    template = builder.sqlite_template(tmp_path / "templates", SPEC)
    target = tmp_path / "tenants" / "failed.db"

    def prepare(conn: Connection) -> None:
        conn.execute(text("DELETE FROM categories"))
        raise RuntimeError("seed failed")

    with pytest.raises(RuntimeError, match="seed failed"):
        write_prepared_copy(template, target, prepare)
    assert not target.exists()
    assert not target.parent.exists() or list(target.parent.iterdir()) == []
