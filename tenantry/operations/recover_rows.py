"""Recovering rows deleted by mistake from a backup: the ``recover_rows`` operation.

The rows a backup holds and the live table lacks are found
(:func:`~tenantry.services.backups.recovery.find_missing_rows`: the backup restored into a
scratch database, progress in bytes), then, if asked, inserted into the live database in one
transaction (progress in rows), and master's counters and audit entry written in another. The
operation is recorded and claimed by this process, its lease renewed from a thread;
``tenantry ops cancel`` is honoured up to the moment rows are written (nothing is inserted).
A recovery whose process dies ends ``failed`` by the workers' recovery sweep
(:func:`recover_stalled_rows`): its insert was one transaction, so either every row is in or
none is, and the scratch database is dropped by the next sweep of scratch databases.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from tenantry.backup import artifacts
from tenantry.backup.storage import Storage
from tenantry.crypto import SecretBox
from tenantry.db.engines import connect, make_engine
from tenantry.db.master.models import OperationKind, OperationStatus, ProgressUnit
from tenantry.errors import Conflict, TenantryError
from tenantry.failpoints import failpoint
from tenantry.operations.byte_progress import ByteReporter
from tenantry.operations.kit import LostClaim, OperationKit
from tenantry.operations.running import error_message
from tenantry.services.backups.recovery import (
    BATCH,
    RowRecovery,
    Status,
    find_missing_rows,
    insert_failed,
    insert_rows,
    record_recovered,
)
from tenantry.services.backups.recovery_checks import blocked_reason, live_target
from tenantry.services.backups.scratch_sweep import backup_params
from tenantry.services.backups.verification import get_backup
from tenantry.services.counters import count_store_database
from tenantry.settings import Settings


class RecoveryCancelled(TenantryError):
    """The recovery was asked to stop (``tenantry ops cancel``) before rows were written."""


@dataclass
class _Run:
    """A recovery in progress, held by ``kit``."""

    kit: OperationKit
    operation_id: uuid.UUID

    def record(self, **fields: Any) -> None:
        """Record progress; a cancel request raises :class:`RecoveryCancelled`."""
        if self.kit.progress(self.operation_id, **fields):
            raise self.cancelled()

    def cancelled(self) -> RecoveryCancelled:
        """What a cancelled recovery says."""
        return RecoveryCancelled(
            f"the row recovery (operation {self.operation_id}) was cancelled; no row was inserted."
        )

    def on_status(self, forward: Status | None) -> Status:
        """A status line forwarded to ``forward`` and recorded as the operation's message."""

        def say(text: str) -> None:
            if forward is not None:
                forward(text)
            self.record(message=text)

        return say


def _start(
    sessions: sessionmaker[Session],
    settings: Settings,
    backup_ref: str | uuid.UUID,
    table_name: str,
    actor: str,
    step: str,
) -> _Run:
    with sessions() as session:
        backup = get_backup(session, backup_ref)
    kit = OperationKit.from_settings(sessions, settings)
    operation_id = kit.create(
        OperationKind.RECOVER_ROWS,
        store_id=backup.store_id,
        target=f"{table_name} from backup {backup.id}"[:255],
        params=backup_params(backup.id),  # the sweep keeps its scratch database
        requested_by=actor,
        step=step,
        total=backup.size_bytes,
        unit=ProgressUnit.BYTES,
    )
    kit.claim(operation_id)
    return _Run(kit, operation_id)


def recover_rows(
    sessions: sessionmaker[Session],
    box: SecretBox,
    settings: Settings,
    storage: Storage,
    backup_ref: str | uuid.UUID,
    table_name: str,
    *,
    where: str | None = None,
    apply: bool = False,
    actor: str,
    batch_size: int = BATCH,
    on_progress: artifacts.Progress | None = None,
    on_status: Status | None = None,
    before_apply: Callable[[RowRecovery], None] | None = None,
) -> tuple[RowRecovery, int | None]:
    """Find the rows of ``table_name`` the backup holds and the live table lacks, hand them to
    ``before_apply`` (to write them out), and with ``apply`` insert them (one transaction);
    the rows found and how many were inserted (None without ``apply``). Runs as a
    ``recover_rows`` operation; a failure or a cancel raises, the operation ended."""
    run = _start(sessions, settings, backup_ref, table_name, actor, "restore_scratch")
    try:
        with run.kit.kept_alive(run.operation_id):
            recovery = find_missing_rows(
                sessions,
                box,
                settings,
                storage,
                backup_ref,
                table_name,
                where=where,
                batch_size=batch_size,
                on_progress=ByteReporter(run.kit, run.operation_id, also=on_progress),
                on_status=run.on_status(on_status),
            )
            run.record(
                step="found",
                current=recovery.missing,
                total=recovery.in_backup,
                unit=ProgressUnit.ROWS,
                message=f"{recovery.missing} row(s) missing",
            )
            if before_apply is not None:
                before_apply(recovery)
            applied = (
                _apply(run, sessions, box, settings, recovery, actor, batch_size) if apply else None
            )
    except BaseException as exc:
        _end_failed(run, exc)
        raise
    _finish(run, recovery, applied)
    return recovery, applied


def apply_rows(
    sessions: sessionmaker[Session],
    box: SecretBox,
    settings: Settings,
    recovery: RowRecovery,
    *,
    actor: str,
    batch_size: int = BATCH,
) -> int:
    """Insert rows found earlier into the live database in one transaction, as a
    ``recover_rows`` operation of its own; how many.

    The live database is resolved and identified again first. If any row fails (its key or
    a unique value came back meanwhile, a foreign key has no parent) the transaction is
    rolled back, nothing is inserted, and :class:`Conflict` says why. An audit entry (backup,
    table, count; never row contents) is written to master afterwards.
    """
    run = _start(sessions, settings, recovery.backup_id, recovery.table.name, actor, "apply")
    try:
        with run.kit.kept_alive(run.operation_id):
            applied = _apply(run, sessions, box, settings, recovery, actor, batch_size)
    except BaseException as exc:
        _end_failed(run, exc)
        raise
    _finish(run, recovery, applied)
    return applied


def _apply(
    run: _Run,
    sessions: sessionmaker[Session],
    box: SecretBox,
    settings: Settings,
    recovery: RowRecovery,
    actor: str,
    batch_size: int,
) -> int:
    # The last step boundary: a cancel requested by now leaves the live database untouched.
    run.record(step="apply", current=0, total=recovery.missing, unit=ProgressUnit.ROWS)
    with sessions() as session:
        backup = get_backup(session, recovery.backup_id)
        target = live_target(session, box, settings, backup)
        reason = blocked_reason(session, backup.store_id)
    if reason is not None:
        raise Conflict(
            f"{target.scope} accepts no writes for now ({reason}); no row was inserted.",
            "Try again once that operation has finished.",
        )
    count = len(recovery.rows)
    if not count:
        return 0  # nothing changed, nothing to record
    engine = make_engine(target.url, pooled=False)
    try:
        with connect(engine, begin=True) as conn:
            insert_rows(conn, recovery, batch_size)
            failpoint("recover.before_commit")
    except DBAPIError as exc:
        raise insert_failed(recovery, target.scope, exc) from None
    finally:
        engine.dispose()
    # Recovered products or orders count again in master's counters for the store.
    counters = count_store_database(target.url) if target.store_id is not None else None
    with run.kit.sessions.begin() as session:
        record_recovered(session, target, backup, recovery, counters, actor=actor)
    return count


def _finish(run: _Run, recovery: RowRecovery, applied: int | None) -> None:
    done = f"{recovery.missing} row(s) missing in {recovery.table.name}"
    if applied is not None:
        done += f", {applied} inserted"
        run.kit.progress(run.operation_id, current=applied)
    run.kit.finish(run.operation_id, message=done)


def _end_failed(run: _Run, exc: BaseException) -> None:
    """End the operation ``cancelled`` or ``failed`` with what went wrong (no secret)."""
    try:
        if isinstance(exc, RecoveryCancelled):
            run.kit.mark_cancelled(run.operation_id, message=exc.message)
        else:
            run.kit.fail(run.operation_id, error_message(exc))
    except LostClaim:
        pass  # taken over meanwhile (the recovery sweep): it records how it ended


def recover_stalled_rows(
    sessions: sessionmaker[Session], settings: Settings, operation_id: uuid.UUID
) -> str | None:
    """End row recovery ``operation_id`` whose process died (its lease lapsed) ``failed``
    (``cancelled`` if it was asked to stop); its final status, or None when not stalled."""
    kit = OperationKit.from_settings(sessions, settings)
    claim = kit.claim(operation_id)
    if claim is None:
        return None
    step = kit.get(operation_id).step or "start"
    said = (
        f"its process stopped at step {step}. The rows are inserted in one transaction, so "
        "either all of them are in the live database or none is: list what is still missing "
        "(`tenantry recover rows` without --apply) and run it again."
    )
    if claim.cancel_requested:
        kit.mark_cancelled(operation_id, message=said)
        return OperationStatus.CANCELLED
    kit.fail(operation_id, said)
    return OperationStatus.FAILED
