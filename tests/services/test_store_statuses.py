"""A store's lifecycle status (pending, provisioning, active, ...) is what its database status
and its jobs say, and a page of stores gets every status in one query of the jobs, however
many of them are being provisioned (a page of stores was one query per store)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event

from tenantry.operations import store_create
from tenantry.operations.dispatch import InProcessDispatcher
from tenantry.runtime import Platform
from tenantry.services import stores
from tests.dispatchers import KeptQueued
from tests.platform_fixtures import backend_platform
from tests.store_setup import request_sqlite_file

__all__ = ["backend_platform"]


def _store(platform: Platform, slug: str) -> None:
    store_create.create(platform, slug=slug, name=slug, plan="free", actor="cli:test")


def _queued(platform: Platform, slug: str) -> None:
    """``slug`` created with a provisioning job that stays queued."""
    _store(platform, slug)
    request_sqlite_file(platform, KeptQueued(), slug)


def _provisioned(platform: Platform, slug: str) -> None:
    """``slug`` created and provisioned (active)."""
    _store(platform, slug)
    dispatcher = InProcessDispatcher(platform)
    try:
        request_sqlite_file(platform, dispatcher, slug)
        dispatcher.join()
        dispatcher.raise_failure()
    finally:
        dispatcher.close()


def _statuses(platform: Platform) -> tuple[dict[str, str], int]:
    """Every store's status through one page (slug -> status), and how many statements the
    statuses took."""
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        statements.append(statement)

    with platform.sessions() as session:
        page, _total = stores.list_stores(session, limit=1000)
        event.listen(platform.master_engine, "before_cursor_execute", count)
        try:
            found = stores.lifecycle_statuses(session, page)
        finally:
            event.remove(platform.master_engine, "before_cursor_execute", count)
        # One store at a time gives the same answer.
        assert found == {s.id: stores.lifecycle_status(session, s) for s in page}
        return {s.slug: found[s.id] for s in page}, len(statements)


def test_a_page_of_stores_gets_every_status_in_one_query(backend_platform: Platform) -> None:
    platform = backend_platform
    _store(platform, "never-provisioned")
    _queued(platform, "queued-1")
    _provisioned(platform, "active-1")

    few, few_statements = _statuses(platform)
    assert few == {
        "active-1": "active",
        "never-provisioned": "pending",
        "queued-1": "provisioning",
    }
    for n in range(2, 9):
        _queued(platform, f"queued-{n}")
        _store(platform, f"pending-{n}")
    many, many_statements = _statuses(platform)
    assert many["active-1"] == "active"
    assert [s for s, v in many.items() if v == "provisioning"] == [
        f"queued-{n}" for n in range(1, 9)
    ]
    assert sorted(s for s, v in many.items() if v == "pending") == sorted(
        ["never-provisioned", *(f"pending-{n}" for n in range(2, 9))]
    )
    assert few_statements == many_statements == 1


def test_stores_are_listed_by_lifecycle_status_in_sql(backend_platform: Platform) -> None:
    """Each status's page and total are of exactly the stores :func:`lifecycle_statuses` puts
    in it, however the derived ones (pending, provisioning) are told apart."""
    platform = backend_platform
    for n in range(3):
        _store(platform, f"pending-{n}")
        _queued(platform, f"queued-{n}")
    _provisioned(platform, "active-1")
    _provisioned(platform, "held")
    with platform.writer_sessions.begin() as session:
        stores.suspend_store(session, stores.get_store(session, "held"), actor="cli:test")
    everything, _ = _statuses(platform)
    assert set(everything.values()) == {"pending", "provisioning", "active", "suspended"}
    with platform.sessions() as session:
        for status in stores.LifecycleStatus:
            page, total = stores.list_stores(session, status=status, limit=1000)
            expected = sorted(s for s, v in everything.items() if v == status)
            assert [s.slug for s in page] == expected, status
            assert total == len(expected), status
            first, total_of_page = stores.list_stores(session, status=status, limit=1)
            assert [s.slug for s in first] == expected[:1]
            assert total_of_page == len(expected)
