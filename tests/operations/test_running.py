"""Running an operation in the process that asked for it (:func:`run_here`), on a real master
of each backend: every way the block can end leaves the record a user reads in `ops show`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from tenantry.db.engines import make_engine
from tenantry.db.master.models import OperationKind, ProgressUnit
from tenantry.errors import NotFound
from tenantry.operations.kit import OperationKit
from tenantry.operations.records import list_operations
from tenantry.operations.running import Cancelled, run_here
from tenantry.settings import Settings, load_settings


@pytest.fixture
def sessions(master_url: URL) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(master_url, pool_size=2)
    yield sessionmaker(engine, expire_on_commit=False)
    engine.dispose()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path, job_lease_seconds=5)


def _the_one(sessions: sessionmaker[Session]) -> tuple[str, str | None, str | None, int | None]:
    with sessions() as session:
        (only,), _ = list_operations(session, kind=OperationKind.STORE_DELETE)
    operation = OperationKit(sessions, lease_seconds=5).get(only.id)
    return operation.status, operation.step, operation.error, operation.progress_current


def test_a_block_that_ends_well_succeeds_with_its_progress(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    with run_here(sessions, settings, OperationKind.STORE_DELETE, target="s") as running:
        running.step("one", current=0, total=2, unit=ProgressUnit.DATABASES)
        running.step("two", current=1)  # the last chunk went unreported
    # Succeeded reads total of total, whatever was last reported.
    assert _the_one(sessions) == ("succeeded", "done", None, 2)


def test_a_block_that_raises_fails_with_the_error_and_no_credential(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    def work() -> None:
        with run_here(sessions, settings, OperationKind.STORE_DELETE) as running:
            running.step("connecting")
            raise RuntimeError("could not reach postgresql://app:hunter2@db.example/shop")

    with pytest.raises(RuntimeError):
        work()
    status, step, error, _ = _the_one(sessions)
    assert (status, step) == ("failed", "connecting")
    assert error == "RuntimeError: could not reach postgresql://app:***@db.example/shop"
    assert "hunter2" not in error


def test_a_domain_error_is_shown_with_its_hint(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    with pytest.raises(NotFound), run_here(sessions, settings, OperationKind.STORE_DELETE):
        raise NotFound("no store 'x'.", "List stores with `tenantry stores list`.")
    assert _the_one(sessions)[2] == "no store 'x'. List stores with `tenantry stores list`."


def test_a_cancel_stops_the_block_at_its_next_step_and_not_past_the_point_of_no_return(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    ran: list[str] = []

    def work() -> None:
        with run_here(sessions, settings, OperationKind.STORE_DELETE) as running:
            running.step("first")
            ran.append("first")
            OperationKit(sessions, lease_seconds=5).request_cancel(running.id)
            running.step("second")
            ran.append("second")

    with pytest.raises(Cancelled) as stopped:
        work()
    assert ran == ["first"]
    assert "cancelled before 'second'" in stopped.value.message
    assert f"tenantry ops show {stopped.value.operation_id}" in (stopped.value.hint or "")
    assert _the_one(sessions)[:2] == ("cancelled", "first")


def test_a_cancel_asked_past_the_point_of_no_return_is_too_late(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    with run_here(sessions, settings, OperationKind.STORE_DELETE) as running:
        running.step("dropping")
        OperationKit(sessions, lease_seconds=5).request_cancel(running.id)
        running.step("removing", cancellable=False)
    assert _the_one(sessions)[0] == "succeeded"
