"""``import billing``: legacy billing tables into the billing database under one app, as a
durable operation.

The operation checks the whole source first (the dry-run's checks, :mod:`tenantry.imports.
billing.plan`) and refuses before any write when a problem is found; then imports table by
table in batches, each batch one billing transaction; then verifies rows and amount totals per
currency, source against billing (:mod:`tenantry.imports.billing.verify`). The verification is
the operation's result: stored in billing's audit log under the operation's id (billing's own
record, beside the rows it describes) and summed up in the operation's message.

Rows get ids derived from their legacy ids, so running the import again, or after its process
died (``kill -9``), writes each row exactly once: a stalled import of the same app from the same
source is claimed and resumed (its attempts go up) once its lease lapsed. One import per app
runs at a time (lock ``import-billing:<app>``). The source is only read, through a read-only
connection, in one transaction per pass.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import URL

from tenantry.db.billing.models import BillingAuditLog
from tenantry.db.master.models import HELD_STATUSES, Operation, OperationKind, ProgressUnit
from tenantry.db.types import utcnow
from tenantry.db.urls import mask
from tenantry.errors import InvalidInput
from tenantry.imports.billing.convert import Problem
from tenantry.imports.billing.mapping import Mapping
from tenantry.imports.billing.plan import Scanned, count_rows, scan
from tenantry.imports.billing.source import reading
from tenantry.imports.billing.verify import Verification, verify
from tenantry.operations.kit import LostClaim, OperationKit
from tenantry.operations.running import Cancelled, Running, error_message
from tenantry.runtime import Platform
from tenantry.services.audit import Outcome
from tenantry.services.billing import audit as billing_audit
from tenantry.services.billing import validation
from tenantry.services.operation_rows import lease_lapsed

KIND = OperationKind.IMPORT_BILLING
#: The billing audit action that holds an import's result.
RESULT_ACTION = "billing.import"
#: Problems named in a refusal's message (the dry-run lists them all).
NAMED_PROBLEMS = 5


class ImportRefused(InvalidInput):
    """The mapping or the data has problems: nothing was written."""

    def __init__(self, problems: list[Problem]) -> None:
        named = "; ".join(p.line() for p in problems[:NAMED_PROBLEMS])
        more = len(problems) - NAMED_PROBLEMS
        super().__init__(
            f"{len(problems)} problem(s) in the mapping or the legacy data, nothing was "
            f"written: {named}{f'; and {more} more' if more > 0 else ''}.",
            "Run with --dry-run to see every problem with example keys; fix the source or the "
            "mapping, then import again.",
        )
        self.problems = problems


@dataclass(frozen=True)
class Progressed:
    """Where an import is, for a progress bar."""

    step: str  # checking, importing, verifying
    current: int
    total: int


OnProgress = Callable[[Progressed], None]


@dataclass(frozen=True)
class Imported:
    """A finished import: its operation, what it read and wrote, and the verification."""

    operation_id: uuid.UUID
    attempts: int
    scanned: Scanned
    verification: Verification

    def document(self) -> dict[str, Any]:
        """As JSON: ``{operation_id, attempts, ok, tables, verification}``."""
        return {
            "operation_id": str(self.operation_id),
            "attempts": self.attempts,
            "ok": self.verification.ok,
            "tables": [t.document() for t in self.scanned.tables],
            "verification": self.verification.document(),
        }


def source_target(app_id: str, url: URL) -> str:
    """What an import is about, for people and for finding one to resume."""
    return f"{app_id} from {mask(url)}"[:255]


def check(
    platform: Platform,
    url: URL,
    mapping: Mapping,
    app_id: str,
    *,
    on_progress: OnProgress | None = None,
) -> Scanned:
    """The dry-run: every problem, and per table the rows to import; nothing is written and
    no operation is recorded."""
    validation.app_id(app_id)
    with reading(url) as source:
        total = count_rows(source, mapping)
        return scan(
            source,
            platform.billing_engine,
            mapping,
            app_id,
            on_batch=_reporter(on_progress, "checking", total),
        )


def _reporter(
    on_progress: OnProgress | None, step: str, total: int
) -> Callable[[str, int, int], None] | None:
    if on_progress is None:
        return None
    return lambda _table, _rows, done: on_progress(Progressed(step, done, total))


def _resumable(kit: OperationKit, platform: Platform, target: str) -> uuid.UUID | None:
    """A stalled import of the same app from the same source (its process died), claimed."""
    with platform.sessions() as session:
        found = session.scalars(
            select(Operation.id)
            .where(
                Operation.kind == KIND,
                Operation.target == target,
                Operation.status.in_(HELD_STATUSES),
                lease_lapsed(utcnow()),
            )
            .order_by(Operation.created_at)
        ).all()
    for operation_id in found:
        if kit.claim(operation_id) is not None:
            return operation_id
    return None


def run_import(
    platform: Platform,
    url: URL,
    mapping: Mapping,
    app_id: str,
    *,
    actor: str,
    on_progress: OnProgress | None = None,
) -> Imported:
    """Import the legacy tables at ``url`` into billing under ``app_id`` (see the module).
    Raises :class:`ImportRefused` when the check finds problems (nothing written),
    :class:`~tenantry.errors.Conflict` when another import of the app runs; a verification
    that finds differences fails the operation and is returned (``verification.ok`` False)."""
    validation.app_id(app_id)
    kit = OperationKit.from_settings(platform.sessions, platform.settings)
    lock = f"import-billing:{app_id}"
    kit.acquire_lock(lock)  # Conflict when another import of this app runs
    try:
        target = source_target(app_id, url)
        operation_id = _resumable(kit, platform, target)
        if operation_id is None:
            operation_id = kit.create(KIND, target=target, requested_by=actor, step="starting")
            if kit.claim(operation_id) is None:
                raise Cancelled(operation_id, "starting")
        attempts = kit.get(operation_id).attempts
        try:
            with kit.kept_alive(operation_id, lock_keys=(lock,)):
                running = Running(kit, operation_id, KIND)
                scanned, verification = _run(
                    platform, running, url, mapping, app_id, actor, on_progress
                )
        except Cancelled as stopped:
            kit.mark_cancelled(operation_id, message=f"cancelled during {stopped.step}")
            raise
        except BaseException as exc:
            with suppress(LostClaim):
                kit.fail(operation_id, error_message(exc))
            raise
        summary = _summary(scanned, verification, attempts)
        if verification.ok:
            kit.finish(operation_id, message=summary)
        else:
            kit.fail(
                operation_id,
                "verification found differences: " + "; ".join(verification.differences()),
                message=summary,
            )
        return Imported(operation_id, attempts, scanned, verification)
    finally:
        kit.release_lock(lock)


def _run(
    platform: Platform,
    running: Running,
    url: URL,
    mapping: Mapping,
    app_id: str,
    actor: str,
    on_progress: OnProgress | None,
) -> tuple[Scanned, Verification]:
    billing = platform.billing_engine
    with reading(url) as source:
        total = count_rows(source, mapping)
    running.step("checking", current=0, total=total, unit=ProgressUnit.ROWS)

    def reported(step: str, of: int) -> Callable[[str, int, int], None]:
        def report(table: str, _rows: int, done: int) -> None:
            # Each batch's progress is committed (and a cancel seen) once the batch is done.
            if running.kit.progress(running.id, current=done, message=f"{step} {table}"):
                raise Cancelled(running.id, step)
            if on_progress is not None:
                on_progress(Progressed(step, done, of))

        return report

    with reading(url) as source:
        checked = scan(source, billing, mapping, app_id, on_batch=reported("checking", total))
    if checked.problems:
        raise ImportRefused(checked.problems.all())
    new = sum(t.new for t in checked.tables)
    running.step(
        "importing",
        current=0,
        total=checked.rows,
        message=f"{new} of {checked.rows} rows to import",
    )

    with reading(url) as source:
        written = scan(
            source,
            billing,
            mapping,
            app_id,
            write=True,
            on_batch=reported("importing", checked.rows),
        )
    # Every row is in: a cancel now would stop nothing but the check of what was written.
    running.step(
        "verifying",
        current=checked.rows,
        message=f"verifying {len(written.tables)} tables",
        cancellable=False,
    )
    if on_progress is not None:
        on_progress(Progressed("verifying", checked.rows, checked.rows))
    verification = verify(billing, written.tables)
    with platform.billing_writer_sessions.begin() as session:
        billing_audit.record(
            session,
            app_id=app_id,
            actor=actor,
            action=RESULT_ACTION,
            target_type="operation",
            target_id=str(running.id),
            details={
                "source": mask(url),
                "tables": [t.document() for t in written.tables],
                "verification": verification.document(),
            },
            outcome=Outcome.SUCCEEDED if verification.ok else Outcome.FAILED,
        )
    return written, verification


def _summary(scanned: Scanned, verification: Verification, attempts: int) -> str:
    written = sum(t.written for t in scanned.tables)
    there = sum(t.present for t in scanned.tables)
    resumed = f" (resumed, attempt {attempts})" if attempts > 1 else ""
    checked = (
        "verified: rows and totals per currency match"
        if verification.ok
        else f"verification found {len(verification.differences())} difference(s)"
    )
    return f"imported {written} rows, {there} already there{resumed}; {checked}"


def result_of(platform: Platform, operation_id: uuid.UUID) -> dict[str, Any] | None:
    """The stored result (tables and verification) of import ``operation_id``, newest first;
    None when it recorded none (it failed before verifying)."""
    with platform.billing_sessions() as session:
        entry = session.scalars(
            select(BillingAuditLog)
            .where(
                BillingAuditLog.action == RESULT_ACTION,
                BillingAuditLog.target_id == str(operation_id),
            )
            .order_by(BillingAuditLog.created_at.desc())
        ).first()
        return None if entry is None else dict(entry.details)


def verify_again(platform: Platform, url: URL, mapping: Mapping, app_id: str) -> Verification:
    """Verify an import now (a later change in billing shows): the source read again."""
    with reading(url) as source:
        scanned = scan(source, platform.billing_engine, mapping, app_id)
    if scanned.problems:
        raise ImportRefused(scanned.problems.all())
    return verify(platform.billing_engine, scanned.tables)
