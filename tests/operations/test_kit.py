"""The operation kit on every backend: claims, leases, progress, cancel, stalled operations
and exclusive locks, with real concurrency (threads, each with its own engine, on one
database)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from typing import TypeVar

import pytest
from sqlalchemy import select, update
from sqlalchemy.engine import URL

from tenantry.db.engines import make_engine
from tenantry.db.master.models import (
    Operation,
    OperationKind,
    OperationLock,
    OperationStatus,
    ProgressUnit,
)
from tenantry.db.types import utcnow
from tenantry.errors import Conflict
from tenantry.operations.kit import LostClaim, OperationKit
from tests.operations.conftest import LEASE_S

T = TypeVar("T")


def at_once(*calls: Callable[[], T]) -> list[T | BaseException]:
    """Run ``calls`` in threads released together; their results (or exceptions) in order."""
    barrier = threading.Barrier(len(calls))
    results: list[T | BaseException] = [RuntimeError("did not run")] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = calls[i]()
        except BaseException as exc:  # reported to the test, which asserts on it
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def status_of(kit: OperationKit, op_id: uuid.UUID) -> str:
    return kit.get(op_id).status


def test_of_two_claimers_at_once_exactly_one_wins(kits: Callable[..., OperationKit]) -> None:
    first, second = kits(), kits()
    for _ in range(8):
        op_id = first.create(OperationKind.BACKUP, target="master")
        claims = at_once(partial(first.claim, op_id), partial(second.claim, op_id))
        assert not any(isinstance(c, BaseException) for c in claims), claims
        won = [c for c in claims if c is not None]
        assert len(won) == 1
        operation = first.get(op_id)
        assert operation.status == OperationStatus.RUNNING
        assert operation.attempts == 1
        winner = first if claims[0] is not None else second
        assert operation.lease_holder == winner.holder


def test_a_holder_that_stops_renewing_loses_the_claim_to_another(
    kits: Callable[..., OperationKit],
) -> None:
    dead, other = kits(), kits()
    op_id = dead.create(OperationKind.RESTORE, target="shop")
    assert dead.claim(op_id) is not None
    dead.progress(op_id, step="copy", current=3, total=10, unit=ProgressUnit.ROWS)
    assert other.claim(op_id) is None  # the lease is live
    time.sleep(LEASE_S + 0.2)
    taken = other.claim(op_id)
    assert taken is not None
    assert taken.attempts == 2
    # The first holder wakes up: everything it tries now says it lost the operation.
    assert dead.renew(op_id) is False
    with pytest.raises(LostClaim):
        dead.progress(op_id, current=4)
    with pytest.raises(LostClaim):
        dead.finish(op_id)
    operation = other.get(op_id)
    assert (operation.lease_holder, operation.step, operation.progress_current) == (
        other.holder,
        "copy",
        3,
    )
    other.finish(op_id, message="moved")
    assert status_of(other, op_id) == OperationStatus.SUCCEEDED


def test_renewing_keeps_the_claim_past_its_first_lease(kits: Callable[..., OperationKit]) -> None:
    holder, other = kits(), kits()
    op_id = holder.create(OperationKind.RESTORE)
    assert holder.claim(op_id) is not None
    with holder.kept_alive(op_id) as lost:
        time.sleep(LEASE_S * 2.5)
        assert other.claim(op_id) is None
    assert not lost.is_set()


def test_progress_is_visible_from_another_session_while_the_work_runs(
    kits: Callable[..., OperationKit], master_url: URL
) -> None:
    worker, watcher = kits(), kits()
    op_id = worker.create(OperationKind.INIT, target="shop", total=3, unit=ProgressUnit.TABLES)
    stepped, go_on = threading.Event(), threading.Event()

    def work() -> None:
        assert worker.claim(op_id) is not None
        for table in range(1, 4):
            worker.progress(op_id, step="create_tables", current=table, message=f"table {table}")
            stepped.set()
            assert go_on.wait(10)
            go_on.clear()
        worker.finish(op_id)
        stepped.set()

    thread = threading.Thread(target=work)
    thread.start()
    seen = []
    try:
        for _ in range(3):
            assert stepped.wait(10)
            stepped.clear()
            with watcher.sessions() as session:  # a session of another process
                operation = session.get(Operation, op_id)
                assert operation is not None
                seen.append((operation.status, operation.step, operation.progress_current))
            go_on.set()
        assert stepped.wait(10)
    finally:
        go_on.set()
        thread.join()
    assert seen == [("running", "create_tables", n) for n in (1, 2, 3)]
    operation = watcher.get(op_id)
    assert (operation.status, operation.progress_total, operation.progress_unit) == (
        "succeeded",
        3,
        "tables",
    )
    assert operation.finished_at is not None
    assert operation.lease_expires_at is None


def test_a_cancel_request_is_seen_by_the_holder_at_its_next_check(
    kits: Callable[..., OperationKit],
) -> None:
    holder, user = kits(), kits()
    op_id = holder.create(OperationKind.INIT, target="tenant")
    assert holder.claim(op_id) is not None
    assert holder.cancel_requested(op_id) is False
    assert user.request_cancel(op_id) == OperationStatus.CANCELLING
    assert user.request_cancel(op_id) == OperationStatus.CANCELLING  # asking twice is fine
    assert holder.cancel_requested(op_id) is True
    holder.progress(op_id, step="cleanup")  # still its holder while it cleans up
    holder.mark_cancelled(op_id)
    operation = user.get(op_id)
    assert operation.status == OperationStatus.CANCELLED
    assert operation.cancel_requested_at is not None
    assert operation.finished_at is not None
    with pytest.raises(Conflict, match="only queued or running"):
        user.request_cancel(op_id)


def test_a_queued_operation_cancelled_is_never_claimed(kits: Callable[..., OperationKit]) -> None:
    worker, user = kits(), kits()
    op_id = user.create(OperationKind.BACKUP)
    assert user.request_cancel(op_id) == OperationStatus.CANCELLED
    assert worker.claim(op_id) is None
    assert status_of(user, op_id) == OperationStatus.CANCELLED


def test_a_cancelling_operation_whose_holder_died_is_claimed_to_clean_up(
    kits: Callable[..., OperationKit],
) -> None:
    dead, other = kits(), kits()
    op_id = dead.create(OperationKind.STORE_DELETE)
    assert dead.claim(op_id) is not None
    other.request_cancel(op_id)
    time.sleep(LEASE_S + 0.2)
    claim = other.claim(op_id)
    assert claim is not None
    assert claim.cancel_requested
    assert status_of(other, op_id) == OperationStatus.CANCELLING


def test_find_stalled_lists_lapsed_running_operations_only(
    kits: Callable[..., OperationKit], master_url: URL
) -> None:
    kit, short = kits(lease_s=60), kits(lease_s=0.2)
    queued = kit.create(OperationKind.BACKUP)
    live = kit.create(OperationKind.BACKUP)
    lapsed = kit.create(OperationKind.PROVISION)
    lapsed_cancelling = kit.create(OperationKind.RESTORE)
    ended = {status: kit.create(OperationKind.BACKUP) for status in ("ok", "fail", "cancel")}
    assert kit.claim(live)
    assert short.claim(lapsed)
    assert short.claim(lapsed_cancelling)
    kit.request_cancel(lapsed_cancelling)
    for op_id in ended.values():
        assert short.claim(op_id) is not None
    short.finish(ended["ok"])
    short.fail(ended["fail"], "boom")
    short.mark_cancelled(ended["cancel"])
    time.sleep(0.4)
    assert {s.id for s in kit.find_stalled()} == {lapsed, lapsed_cancelling}
    assert [s.id for s in kit.find_stalled(kinds=(OperationKind.PROVISION,))] == [lapsed]
    # Queued for longer than asked: its queue message may be lost.
    stalled = kit.find_stalled(queued_for=timedelta(0))
    assert {s.id for s in stalled} == {lapsed, lapsed_cancelling, queued}
    assert {s.status for s in stalled if s.id == lapsed} == {"running"}
    assert status_of(kit, ended["fail"]) == "failed"
    assert kit.get(ended["fail"]).error == "boom"


def test_children_name_their_parent(kits: Callable[..., OperationKit]) -> None:
    kit = kits()
    run = kit.create(OperationKind.BACKUP, target="tenant:shop", unit=ProgressUnit.BYTES)
    children = [
        kit.create(OperationKind.BACKUP_VERIFY, parent_id=run, target=f"test {i}") for i in range(2)
    ]
    with kit.sessions() as session:
        found = session.scalars(select(Operation.id).where(Operation.parent_id == run))
        assert set(found) == set(children)


def test_the_exclusive_lock_admits_one_holder_per_key_and_frees_on_lapse(
    kits: Callable[..., OperationKit],
) -> None:
    first, second = kits(lease_s=LEASE_S), kits(lease_s=LEASE_S)
    key = f"fleet:tenant:{uuid.uuid4().hex[:6]}"
    run = first.create(OperationKind.FLEET_RUN)
    outcomes = at_once(
        lambda: first.acquire_lock(key, operation_id=run),
        lambda: second.acquire_lock(key),
    )
    assert sum(isinstance(o, Conflict) for o in outcomes) == 1, outcomes
    winner, loser = (first, second) if not isinstance(outcomes[0], Conflict) else (second, first)
    with pytest.raises(Conflict, match="held by"):
        loser.acquire_lock(key)
    loser.acquire_lock(key + ":other")  # another key is another lock
    assert winner.renew_lock(key)
    assert not loser.renew_lock(key)
    # The winner dies: its lock lapses and the other takes it over, told from whom.
    time.sleep(LEASE_S + 0.2)
    grant = loser.acquire_lock(key)
    assert grant.took_over
    assert grant.took_over_from == (run if winner is first else None)
    assert winner.renew_lock(key) is False
    winner.release_lock(key)  # not its lock any more: nothing happens
    with pytest.raises(Conflict):
        winner.acquire_lock(key)
    loser.release_lock(key)
    assert winner.acquire_lock(key).took_over is False


def test_acquiring_waits_for_a_live_holder_to_let_go(kits: Callable[..., OperationKit]) -> None:
    first, second = kits(), kits()
    key = f"scheduler:{uuid.uuid4().hex[:6]}"
    first.acquire_lock(key)
    threading.Timer(0.3, lambda: first.release_lock(key)).start()
    started = time.monotonic()
    assert second.acquire_lock(key, wait_s=5).took_over is False
    assert time.monotonic() - started < 5


def test_many_processes_racing_for_a_lock_get_one_grant_and_clear_refusals(
    kits: Callable[..., OperationKit], master_url: URL
) -> None:
    racers = [kits(lease_s=60) for _ in range(4)]
    key = f"race:{uuid.uuid4().hex[:6]}"
    outcomes = at_once(*(lambda k=k: k.acquire_lock(key) for k in racers))
    assert sum(not isinstance(o, BaseException) for o in outcomes) == 1, outcomes
    assert all(isinstance(o, Conflict) for o in outcomes if isinstance(o, BaseException))
    # A lapse seen by all of them at once: still exactly one takes it over.
    engine = make_engine(master_url, pool_size=1)
    try:
        with engine.begin() as conn:
            conn.execute(update(OperationLock).values(expires_at=utcnow()))
    finally:
        engine.dispose()
    outcomes = at_once(*(lambda k=k: k.acquire_lock(key) for k in racers))
    grants = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(grants) == 1, outcomes
    assert grants[0].took_over


def test_a_tick_takes_a_free_lock_skips_a_held_one_and_releases_after(
    kits: Callable[..., OperationKit],
) -> None:
    first, second = kits(), kits()
    key = f"scheduler:{uuid.uuid4().hex[:6]}"
    with first.lock_if_free(key) as mine:
        assert mine
        with second.lock_if_free(key) as theirs:
            assert theirs is False  # at once, not after a wait
        assert first.renew_lock(key)  # the skipped tick took nothing from the holder
    with second.lock_if_free(key) as theirs:  # released after the block
        assert theirs

    def failing_tick() -> None:
        with first.lock_if_free(key) as mine:
            assert mine
            raise RuntimeError("the tick failed")

    with pytest.raises(RuntimeError):
        failing_tick()
    with second.lock_if_free(key) as theirs:  # released after a failure too
        assert theirs
