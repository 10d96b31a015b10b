"""An id or the start of one finds its row on every backend; an ambiguous start is refused."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from tenantry.db.master.models import DatabaseStatus, Store, SubscriptionStatus
from tenantry.db.schemas import master_schema
from tenantry.db.types import utcnow
from tenantry.errors import InvalidInput, NotFound
from tenantry.services import refs
from tests.conftest import DbFactory
from tests.templates import migrated_database

FIRST = uuid.UUID("abcd1234-0000-4000-8000-000000000001")
SECOND = uuid.UUID("abcd1234-0000-4000-8000-000000000002")
OTHER = uuid.UUID("01234567-89ab-4cde-8f01-23456789abcd")


@pytest.fixture
def master(new_database: DbFactory, engines: Callable[[URL], Engine]) -> Iterator[Session]:
    """A master database at head on the backend, holding three stores with chosen ids."""
    url = new_database("master", create=False)
    migrated_database(url, master_schema())
    engine = engines(url)
    with Session(engine) as session:
        for store_id in (FIRST, SECOND, OTHER):
            session.add(
                Store(
                    id=store_id,
                    slug=f"s-{store_id.hex[-4:]}",
                    name="s",
                    subscription_plan="free",
                    subscription_status=SubscriptionStatus.ACTIVE,
                    subscription_started_at=utcnow(),
                    database_status=DatabaseStatus.PROVISIONING,
                )
            )
        session.commit()
        yield session


def _find(session: Session, ref: str) -> Store:
    return refs.find(session, Store, ref, what="store", hint="List them.")


@pytest.mark.parametrize(
    "ref", [str(OTHER), str(OTHER).upper(), "0123", "01234567-89", "0123456789ab", " 01234567 "]
)
def test_an_id_or_its_start_finds_the_row(master: Session, ref: str) -> None:
    assert _find(master, ref).id == OTHER


def test_a_start_shared_by_several_ids_is_refused_listing_them(master: Session) -> None:
    with pytest.raises(InvalidInput) as refused:
        _find(master, "abcd12")
    assert str(FIRST) in refused.value.message
    assert str(SECOND) in refused.value.message
    assert _find(master, "abcd1234-0000-4000-8000-000000000002").id == SECOND


@pytest.mark.parametrize("ref", ["ffff", "", "%", "ab%", "abcd_", "zz", "0" * 40, "'; drop"])
def test_anything_else_is_not_found(master: Session, ref: str) -> None:
    with pytest.raises(NotFound):
        _find(master, ref)


def test_where_narrows_the_candidates(master: Session) -> None:
    found = refs.find(master, Store, "abcd", what="store", hint="", where=Store.id == SECOND)
    assert found.id == SECOND
