"""The upgrade of fleet runs on PostgreSQL and SQLite (tenantry.db.quick_upgrade): the scripts,
the version row and the checksums in fewer statements, and nothing applied when the revision
moved."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, inspect, select

from tenantry.db import checksums, migrations, quick_upgrade
from tenantry.db.engines import make_engine
from tenantry.db.schemas import Role, SchemaSpec
from tenantry.db.types import utcnow
from tenantry.errors import MigrationError
from tests.conftest import DbFactory
from tests.revision_scripts import ENV_PY, revision_script

Q001 = "    op.create_table('items', sa.Column('id', sa.Integer(), primary_key=True))"
Q002 = (
    "    op.add_column('items', sa.Column('note', sa.String(50), nullable=True))\n"
    "    op.create_index('ix_items_note', 'items', ['note'])"
)
Q003 = "    op.add_column('items', sa.Column('size', sa.Integer(), nullable=True))"


def _spec(tmp_path: Path) -> SchemaSpec:
    path = tmp_path / "quickshop"
    (path / "versions").mkdir(parents=True)
    (path / "env.py").write_text(ENV_PY)
    for rev, down, body in (("q001", None, Q001), ("q002", "q001", Q002), ("q003", "q002", Q003)):
        text = revision_script(rev, down, body)
        (path / "versions" / f"{rev}.py").write_text(text)
    metadata = MetaData()
    Table(
        "items",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("note", String(50)),
        Column("size", Integer),
    )
    return SchemaSpec(Role.TENANT, "quickshop", metadata, path)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)
def test_the_upgrade_moves_the_version_records_checksums_or_applies_nothing(
    new_database: DbFactory, tmp_path: Path
) -> None:
    spec = _spec(tmp_path)
    engine = make_engine(new_database("quick"), pooled=False)
    sums = checksums.checksum_table(spec.role.value)
    try:
        with engine.begin() as conn:  # migrated by code that recorded no checksums
            migrations.upgrade(conn, spec, "q001")
        todo = migrations.between(spec, "q001", "q003")  # two revisions in one step

        with engine.connect() as conn:
            moved_meanwhile = conn.begin()
            assert quick_upgrade.state(conn, spec) == ("q001", False)
            with pytest.raises(MigrationError) as refused:
                # As if another migration had moved the database from q000 after the read.
                quick_upgrade.apply(conn, spec, "q000", "q003", todo, checksums_exist=False)
            assert "changed from q000 while it was being migrated" in refused.value.message
            moved_meanwhile.rollback()
            assert migrations.current(conn, spec) == "q001"
            assert "note" not in {c["name"] for c in inspect(conn).get_columns("items")}
            assert not inspect(conn).has_table(sums.name)
            conn.rollback()

            before = utcnow()
            with conn.begin():
                start, exist = quick_upgrade.state(conn, spec)
                assert start is not None
                quick_upgrade.apply(conn, spec, start, "q003", todo, checksums_exist=exist)
            assert migrations.current(conn, spec) == "q003"
            assert {"note", "size"} <= {c["name"] for c in inspect(conn).get_columns("items")}
            rows = conn.execute(select(sums)).all()
            assert {r.revision: r.checksum for r in rows} == {
                script.revision: checksums.script_checksum(script) for script in todo
            }
            for row in rows:  # when it ran, not when the statement was first built
                assert before <= row.applied_at <= utcnow()
            assert quick_upgrade.state(conn, spec) == ("q003", True)
            conn.rollback()
    finally:
        engine.dispose()
