"""The one identity guard (``expect``): role, schema, instance and owner, on every backend."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from tenantry.db.identity import Identity, expect, guard, stamp_identity
from tenantry.db.probe import probe
from tenantry.db.schemas import Role, billing_schema, master_schema
from tenantry.db.urls import mask
from tenantry.errors import NotOwner, UnidentifiedDatabase, WrongDatabase
from tests.conftest import DbFactory
from tests.helpers import schema_snapshot

Engines = Callable[[URL], Engine]


@pytest.fixture
def stamped(new_database: DbFactory, engines: Engines) -> tuple[Engine, Identity]:
    """A database stamped as master, owned by the app ``tenantry``, with one table."""
    engine = engines(new_database("guard"))
    with engine.begin() as conn:
        identity = stamp_identity(conn, master_schema(), "tenantry")
        conn.execute(text("CREATE TABLE stores (id INTEGER PRIMARY KEY)"))
    return engine, identity


def test_the_expected_database_passes_and_says_what_it_is(
    stamped: tuple[Engine, Identity],
) -> None:
    engine, identity = stamped
    with engine.connect() as conn:
        found = expect(
            conn,
            master_schema(),
            where=mask(engine.url),
            instance_id=identity.instance_id,
            owner="tenantry",
        )
        assert found == identity
        assert expect(conn, Role.MASTER, where="m") == identity  # a role alone is enough


def test_another_role_is_refused_naming_both_sides(stamped: tuple[Engine, Identity]) -> None:
    engine, identity = stamped
    with engine.connect() as conn:
        before = schema_snapshot(conn)
        with pytest.raises(WrongDatabase) as refused:
            expect(conn, billing_schema(), where=f"{mask(engine.url)} (the billing database)")
        assert schema_snapshot(conn) == before
    message = refused.value.message
    assert message.startswith("expected a billing database (schema billing) at ")
    assert mask(engine.url) in message
    assert f"found a master database (schema master, instance {identity.instance_id}" in message
    assert message.endswith("nothing was changed.")
    assert "each role must point at its own database" in (refused.value.hint or "")


def test_another_instance_is_refused_naming_both_instances(
    stamped: tuple[Engine, Identity],
) -> None:
    engine, identity = stamped
    other = str(uuid.uuid4())
    with engine.connect() as conn, pytest.raises(WrongDatabase) as refused:
        expect(
            conn,
            master_schema(),
            where="the master database",
            instance_id=other,
            why="a copy is not the original",
            hint="Point it at the original.",
        )
    message = refused.value.message
    assert f"expected a master database (schema master, instance {other})" in message
    assert f"instance {identity.instance_id}" in message
    assert "; a copy is not the original; nothing was changed." in message
    assert refused.value.hint == "Point it at the original."


def test_another_owner_is_refused_as_not_owner(stamped: tuple[Engine, Identity]) -> None:
    engine, _ = stamped
    with engine.connect() as conn, pytest.raises(NotOwner) as refused:
        expect(conn, master_schema(), where="the master database", owner="client-portal")
    message = refused.value.message
    assert "owner client-portal" in message  # expected
    assert "owner tenantry" in message  # found
    assert "'client-portal' is a consumer" in message
    assert "'tenantry'" in (refused.value.hint or "")


def test_tables_without_identity_are_unidentified_and_left_alone(
    new_database: DbFactory, engines: Engines
) -> None:
    engine = engines(new_database("legacy"))
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE invoices (id INTEGER PRIMARY KEY)"))
    with engine.connect() as conn:
        before = schema_snapshot(conn)
        for empty_ok in (False, True):
            with pytest.raises(UnidentifiedDatabase) as refused:
                expect(conn, Role.BILLING, where="the billing database", empty_ok=empty_ok)
            assert "1 table(s) (invoices) and no tenantry identity" in refused.value.message
            assert "tenantry db adopt --role billing" in (refused.value.hint or "")
        with pytest.raises(UnidentifiedDatabase):
            guard(conn, billing_schema(), where="the billing database")
        assert schema_snapshot(conn) == before


def test_an_empty_database_passes_only_when_it_may_be_empty(
    new_database: DbFactory, engines: Engines
) -> None:
    engine = engines(new_database("empty"))
    with engine.connect() as conn:
        with pytest.raises(WrongDatabase) as refused:
            expect(conn, master_schema(), where="the master database")
        assert "found an empty database without tenantry identity" in refused.value.message
        assert expect(conn, master_schema(), where="m", empty_ok=True) is None
        assert guard(conn, master_schema()) is None


def test_an_identity_already_probed_is_judged_as_read(stamped: tuple[Engine, Identity]) -> None:
    engine, identity = stamped
    with engine.connect() as conn:
        probed, _revision = probe(conn, master_schema())
        assert expect(conn, master_schema(), where="m", identity=probed) == identity
        with pytest.raises(WrongDatabase):
            expect(conn, Role.TENANT, where="m", identity=probed)
