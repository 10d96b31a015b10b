"""The one-statement read of ``fleet status --verify``: on PostgreSQL it says what the careful
readers say (identity, revision, recorded checksums, fingerprint), reads a checksum table
whenever there is one (even right after a database without), and gives way elsewhere."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from tenantry.db import checksums, migrations
from tenantry.db.identity import read_identity
from tenantry.db.probe import probe
from tenantry.db.schema_fingerprint import fingerprint
from tenantry.db.schemas import tenant_schema
from tenantry.db.tenant_snapshot import read_snapshot
from tests.conftest import DbFactory
from tests.templates import migrated_database

SPEC = tenant_schema("tenantry.db.tenant.store.plugin")


def test_the_snapshot_says_what_the_careful_readers_say(
    new_database: DbFactory, engines: Callable[[URL], Engine], backend: str
) -> None:
    bare, recorded = (engines(new_database(n, create=False)) for n in ("sn1", "sn2"))
    for engine in (bare, recorded):
        migrated_database(engine.url, SPEC)
    with recorded.connect() as conn:
        assert checksums.recorded(conn, SPEC)  # its scripts' hashes were recorded
    with bare.begin() as conn:  # as a database migrated before checksums were kept
        conn.execute(text(f"DROP TABLE {checksums.checksum_table(SPEC.role.value).name}"))
    with recorded.begin() as conn:
        conn.execute(text("ALTER TABLE products ADD COLUMN legacy_code VARCHAR(20)"))

    # The one without a checksum table first: the next read must still find the other's.
    for engine in (bare, recorded, bare, recorded):
        with engine.connect() as conn:
            snapshot = read_snapshot(conn, SPEC)
            if backend != "postgresql":
                assert snapshot is None  # one read at a time there
                continue
            assert snapshot is not None
            assert not conn.in_transaction()
            identity, revision = probe(conn, SPEC)
            assert snapshot.identity == identity == read_identity(conn)
            assert snapshot.revision == revision == migrations.head(SPEC)
            assert snapshot.checksums == (checksums.recorded(conn, SPEC) or {})
            assert snapshot.fingerprint == fingerprint(conn)
            assert bool(snapshot.checksums) == (engine is recorded)
    if backend == "postgresql":
        with bare.connect() as a, recorded.connect() as b:
            one, other = read_snapshot(a, SPEC), read_snapshot(b, SPEC)
        assert one is not None
        assert other is not None
        assert one.fingerprint != other.fingerprint  # the added column changed it


def test_a_database_without_identity_gets_the_careful_readers(
    new_database: DbFactory, engines: Callable[[URL], Engine]
) -> None:
    engine = engines(new_database("sn3"))
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE products (id INTEGER PRIMARY KEY)"))
    with engine.connect() as conn:
        assert read_snapshot(conn, SPEC) is None
        assert not conn.in_transaction()
