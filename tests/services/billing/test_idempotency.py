"""Idempotency keys kept with the effect, on a real billing database of each backend: a
commit that staged no response still leaves a key that can never be taken again."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from tenantry.db.schemas import billing_schema
from tenantry.errors import Conflict
from tenantry.services.billing import idempotency
from tests.conftest import DbFactory
from tests.templates import migrated_database

HASH = idempotency.request_hash("POST", "/billing/plans", b"{}")


@pytest.fixture
def sessions(new_database: DbFactory, engines: Callable[[URL], Engine]) -> sessionmaker[Session]:
    """Sessions on a migrated billing database of the backend."""
    url = new_database("billing", create=False)
    migrated_database(url, billing_schema())
    return sessionmaker(engines(url), expire_on_commit=False)


def test_an_effect_committed_without_a_staged_response_is_answered_409_forever(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        idempotency.reserve(session, "acme", "k-1", HASH)
    with sessions.begin() as session:  # the route's transaction: its effect, no staged response
        idempotency.keep_with_effect(session, "acme", "k-1", None)
    with sessions.begin() as session:
        replay = idempotency.first_request(session, "acme", "k-1", HASH)
    assert replay is not None
    assert replay.status_code == 409
    error = json.loads(replay.body)["error"]
    assert "took effect" in error["message"]
    assert "GET" in error["hint"]
    # A server error answered afterwards does not release a key whose effect was committed.
    with sessions.begin() as session:
        idempotency.finish(session, "acme", "k-1", 500, "boom")
    with sessions.begin() as session:
        assert idempotency.first_request(session, "acme", "k-1", HASH) == replay


def test_a_server_error_with_no_effect_releases_the_key(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        idempotency.reserve(session, "acme", "k-2", HASH)
    with sessions.begin() as session:
        idempotency.finish(session, "acme", "k-2", 503, "down")
    with sessions.begin() as session:
        assert idempotency.first_request(session, "acme", "k-2", HASH) is None
    with sessions.begin() as session:
        idempotency.reserve(session, "acme", "k-2", HASH)  # free to take again
    with sessions.begin() as session, pytest.raises(Conflict, match="still in progress"):
        idempotency.first_request(session, "acme", "k-2", HASH)
