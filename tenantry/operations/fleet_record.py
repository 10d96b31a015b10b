"""A fleet run's account in master: each tenant's outcome, the run's counts and progress.

Outcomes are written in batches (one transaction per batch, on master, owned here), so a run
over thousands of tenants costs master a few writes a second rather than several per tenant,
and a killed run leaves an exact account of every tenant it finished.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from sqlalchemy import Connection, Table, insert, update

from tenantry.db.master.models import (
    FleetResult,
    FleetRun,
    FleetRunStatus,
    Operation,
    Store,
    TenantOutcome,
)
from tenantry.db.types import utcnow
from tenantry.operations.kit import OperationKit
from tenantry.services.fleet_migrate import Outcome

#: Outcomes are written to master at least this often (and at the end); a cancel request is
#: looked for as often.
FLUSH_EVERY_S = 0.5
#: ``fleet_runs`` alone (its operation's columns live in ``operations``).
RUNS = cast(Table, FleetRun.__table__)


@dataclass
class RunReport:
    """The account of one fleet run."""

    run_id: uuid.UUID
    role: str
    goal: str | None
    status: FleetRunStatus
    total: int
    outcomes: list[Outcome] = field(default_factory=list)
    took_over: uuid.UUID | None = None
    seconds: float = 0.0
    lost_lock: bool = False

    @property
    def counts(self) -> Counter[str]:
        """Outcomes per status."""
        return Counter(o.status.value for o in self.outcomes)

    @property
    def failures(self) -> list[Outcome]:
        """Tenants that failed or were refused."""
        return [
            o for o in self.outcomes if o.status in (TenantOutcome.FAILED, TenantOutcome.REFUSED)
        ]


def write_outcomes(conn: Connection, run_id: uuid.UUID, batch: list[Outcome]) -> None:
    """Record ``batch`` of run ``run_id`` on ``conn`` (the caller's transaction): each tenant's
    result, the run's counts and progress, and each migrated store's revision."""
    if not batch:
        return
    counts = Counter(o.status for o in batch)
    now = utcnow()
    # Core executemany: the ORM's unit of work cost more than the run's own work.
    conn.execute(
        insert(FleetResult),
        [
            {
                "id": uuid.uuid4(),
                "run_id": run_id,
                "store_id": o.store_id,
                "slug": o.slug,
                "from_revision": o.from_revision,
                "to_revision": o.to_revision,
                "status": o.status,
                "duration_ms": o.duration_ms,
                "error": o.error,
                "finished_at": now,
            }
            for o in batch
        ],
    )
    conn.execute(
        update(RUNS)
        .where(RUNS.c.id == run_id)
        .values(
            migrated=RUNS.c.migrated + counts[TenantOutcome.MIGRATED],
            current=RUNS.c.current + counts[TenantOutcome.CURRENT],
            failed=RUNS.c.failed + counts[TenantOutcome.FAILED] + counts[TenantOutcome.REFUSED],
            skipped=RUNS.c.skipped + counts[TenantOutcome.SKIPPED],
        )
    )
    # Progress counts every tenant with an outcome; the lease is the holder's to renew.
    conn.execute(
        update(Operation)
        .where(Operation.id == run_id)
        .values(progress_current=Operation.progress_current + len(batch), updated_at=now)
    )
    for rev, ids in _by_revision(batch).items():
        # Only the stores whose revision changed: a run with nothing to apply writes no store.
        conn.execute(
            update(Store)
            .where(Store.id.in_(ids), Store.schema_revision.is_distinct_from(rev))
            .values(schema_revision=rev)
        )


def _by_revision(outcomes: list[Outcome]) -> dict[str | None, list[uuid.UUID]]:
    grouped: dict[str | None, list[uuid.UUID]] = {}
    for o in outcomes:
        if o.status in (TenantOutcome.MIGRATED, TenantOutcome.CURRENT):
            grouped.setdefault(o.to_revision, []).append(o.store_id)
    return grouped


class Recorder:
    """Writes a run's outcomes to master in batches, on a thread of its own when started (so
    the run's thread keeps handing tenants out while master is written), and looks for a
    cancel request as often, calling ``on_cancel`` once one is seen."""

    def __init__(
        self,
        kit: OperationKit,
        run_id: uuid.UUID,
        *,
        on_cancel: Callable[[], None] | None = None,
    ) -> None:
        self._kit = kit
        self._run_id = run_id
        self._on_cancel = on_cancel
        self._pending: list[Outcome] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Flush every :data:`FLUSH_EVERY_S` in the background until :meth:`close`."""
        self._thread = threading.Thread(
            target=self._loop, name="tenantry-fleet-record", daemon=True
        )
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(FLUSH_EVERY_S):
            try:
                self.flush()
                if self._on_cancel is not None and self._kit.cancel_requested(self._run_id):
                    self._on_cancel()
            except Exception:  # a master hiccup: the batch is written at the next beat
                continue

    def add(self, outcome: Outcome) -> None:
        """Queue one outcome for the next flush."""
        with self._lock:
            self._pending.append(outcome)

    def close(self) -> None:
        """Stop the background thread and write what is left (again: nothing)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.flush()

    def flush(self) -> None:
        """Write the pending outcomes (and the run's counters) in one transaction; a batch
        that could not be written stays pending for the next flush."""
        with self._lock:
            batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            with self._kit.engine.begin() as conn:
                write_outcomes(conn, self._run_id, batch)
        except BaseException:
            with self._lock:
                self._pending[:0] = batch
            raise
