"""On a SQLite master every writer queues on one lock (tenantry/db/sqlite_writers.py): a
request that records its change in an operation's own transaction must take that lock for
the change alone, not for the reads around it as well."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import event

from tests.api.conftest import Api


@contextmanager
def writer_transactions(api: Api) -> Iterator[Callable[[], int]]:
    """How many transactions that take master's writer lock the API began in the block,
    after a first request that records the admin key's use (due once a minute, a write)."""
    assert api.client.get("/stores", headers=api.admin).status_code == 200
    engine = api.client.app.state.platform.master_engine  # type: ignore[attr-defined]
    begun: list[str] = []

    def seen(conn: object, cursor: object, statement: str, *args: object) -> None:
        if statement == "BEGIN IMMEDIATE":
            begun.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    try:
        yield lambda: len(begun)
    finally:
        event.remove(engine, "before_cursor_execute", seen)


def test_a_store_is_created_in_one_writer_transaction(api: Api) -> None:
    """Not one for the key's authentication nor one for reading the store back."""
    with writer_transactions(api) as count:
        created = api.client.post(
            "/stores", json={"slug": "one-writer", "name": "One"}, headers=api.admin
        )
    assert created.status_code == 201, created.text
    assert created.json()["slug"] == "one-writer"
    assert count() == 1


def test_a_refused_request_and_a_dry_run_take_no_writer_lock(api: Api) -> None:
    """An unknown store's provisioning is a 404 and a rebalance's dry run a plan: neither
    records anything, so neither waits behind master's writers."""
    with writer_transactions(api) as count:
        missing = api.client.post(
            "/stores/no-such-store/provision", json={"mode": "create_new"}, headers=api.admin
        )
        planned = api.client.post(
            "/database-servers/rebalance", json={"dry_run": True}, headers=api.admin
        )
    assert missing.status_code == 404, missing.text
    assert planned.status_code == 200, planned.text
    assert planned.json()["operation_id"] is None
    assert count() == 0
