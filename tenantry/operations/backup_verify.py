"""Verifying a backup as an operation (kind ``backup_verify``): restore into a scratch database,
check, record the result on the catalog row.

Each restore test is an operation of its own, a child of the take's operation (``parent_id``:
the backup's id), so a backup's history lists every test it went through. Steps: ``restore``
(bytes read from storage) → ``check`` → ``record``; a cancel request stops it at a step
boundary or between chunks of the restore (the scratch database is dropped whatever happens)
and records nothing on the backup. A verification that finds the backup damaged succeeded as
an operation: its finding (``corrupt``) is on the catalog row.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from datetime import timedelta

from sqlalchemy import Update
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from tenantry.backup import artifacts
from tenantry.backup.storage import Storage
from tenantry.db.engines import writer_sessions
from tenantry.db.master.models import Backup, Operation, OperationKind, ProgressUnit
from tenantry.errors import TenantryError
from tenantry.operations.audited import attempt, not_audited
from tenantry.operations.backup_take import kit_for
from tenantry.operations.byte_progress import ByteReporter, Stopped
from tenantry.operations.kit import LostClaim, OperationKit
from tenantry.operations.running import error_message
from tenantry.services.backups import verification
from tenantry.services.backups.scratch_sweep import backup_params
from tenantry.services.backups.targets import scope_of
from tenantry.services.backups.verification import Verification, VerificationNotRun

#: The error of a restore test whose process died (found by the recovery sweep).
STALLED_ERROR = (
    "the process verifying this backup stopped before it finished (killed or crashed); the "
    "backup was left as it was. Run `tenantry backup verify` again."
)


class VerificationCancelled(TenantryError):
    """The restore test was stopped on request; the backup was left as it was."""


def verify_backup(
    sessions: sessionmaker[Session],
    storage: Storage,
    backup_id: uuid.UUID,
    server: URL,
    *,
    on_progress: artifacts.Progress | None = None,
    lease_seconds: float | None = None,
    actor: str,
    tracked: bool = True,
    audited: bool = True,
) -> Verification:
    """Restore a backup into a scratch database on ``server``, check it, record the result.

    A damaged artifact or a restored copy that fails its checks marks the backup ``corrupt``;
    a passing one ``verified``. Trouble with the scratch server raises
    :class:`VerificationNotRun` after recording why in the backup's ``verify_error``;
    :class:`VerificationCancelled` when asked to stop. Without ``tracked`` no operation is
    recorded (a master older than the operations table). Audited as ``backup.verify``
    unless not ``audited`` (a pre-migration backup's test).
    """
    with sessions() as session:
        backup = verification.get_backup(session, backup_id)
        verification.require_good(backup)
        # (Untracked: master may be older than the operations table.)
        has_take = tracked and session.get(Operation, backup.id) is not None
        session.expunge(backup)
    kit = kit_for(sessions, lease_seconds) if tracked else None
    test = _Test(kit, writer_sessions(sessions), backup)
    test.start(has_take, actor)
    scope = attempt if audited else not_audited
    with scope(
        writer_sessions(sessions),
        actor=actor,
        action="backup.verify",
        target_type="backup",
        target_id=str(backup.id),
        store_id=backup.store_id,
        details={"scope": scope_of(backup)},
    ) as entry:
        result = test.run(storage, server, on_progress)
        entry.details["passed"] = result.passed
    return result


class _Test:
    """One restore test of ``backup``, held through ``kit`` (None: untracked)."""

    def __init__(
        self, kit: OperationKit | None, writes: sessionmaker[Session], backup: Backup
    ) -> None:
        self.kit = kit
        self.writes = writes
        self.backup = backup
        self.id = uuid.uuid4()

    def start(self, has_take: bool, actor: str) -> None:
        """Record and claim the test's operation."""
        if self.kit is None:
            return
        self.id = self.kit.create(
            OperationKind.BACKUP_VERIFY,
            store_id=self.backup.store_id,
            target=scope_of(self.backup),
            parent_id=self.backup.id if has_take else None,
            requested_by=actor,
            total=self.backup.size_bytes,
            unit=ProgressUnit.BYTES,
            message=f"restore test of backup {self.backup.id}",
            params=backup_params(self.backup.id),  # the sweep keeps its scratch database
        )
        if self.kit.claim(self.id) is None:  # just created: only a cancel can beat us
            self._cancelled()

    def run(
        self, storage: Storage, server: URL, on_progress: artifacts.Progress | None
    ) -> Verification:
        """Restore, check, record; a test that could not run is recorded and raised."""
        try:
            with self._kept_alive():
                self._step("restore")
                progress = ByteReporter(self.kit, self.id, on_progress)
                try:
                    result = verification.restore_test(
                        storage, self.backup, server, on_progress=progress
                    )
                except VerificationNotRun as exc:
                    self._record(verification.not_run(self.backup.id, exc.message))
                    self._fail(exc.message)
                    raise
                self._step("record", record=verification.recorded(result))
        except Stopped:
            self._cancelled()
        except (LostClaim, VerificationNotRun):
            raise
        except BaseException as exc:
            self._fail(error_message(exc)[:4000])
            raise
        if self.kit is not None:
            outcome = "passed" if result.passed else "FAILED: backup marked corrupt"
            self.kit.finish(self.id, message=f"restore test {outcome}")
        return result

    @contextlib.contextmanager
    def _kept_alive(self) -> Iterator[None]:
        if self.kit is None:
            yield
            return
        with self.kit.kept_alive(self.id):
            yield

    def _record(self, record: Update) -> None:
        with self.writes.begin() as session:
            session.execute(record)

    def _step(self, step: str, *, record: Update | None = None) -> None:
        if self.kit is None:
            if record is not None:
                self._record(record)
            return
        if self.kit.progress(self.id, step, record=record):
            raise Stopped

    def _cancelled(self) -> None:
        assert self.kit is not None
        with contextlib.suppress(LostClaim):
            self.kit.mark_cancelled(self.id, message="cancelled: the backup was left as it was")
        raise VerificationCancelled(
            f"the restore test of backup {self.backup.id} was cancelled; the backup was left "
            "as it was.",
            "Run `tenantry backup verify` again when a test is wanted.",
        )

    def _fail(self, error: str) -> None:
        if self.kit is not None:
            with contextlib.suppress(LostClaim):
                self.kit.fail(self.id, error)


def recover_stalled(sessions: sessionmaker[Session], *, lease_seconds: float) -> list[uuid.UUID]:
    """The recovery sweep's part for restore tests whose process died: failed (their scratch
    database is dropped by :func:`~tenantry.operations.sweep.drop_abandoned_scratch`); their
    ids."""
    kit = kit_for(sessions, lease_seconds)
    ended: list[uuid.UUID] = []
    stalled = kit.find_stalled(
        kinds=(OperationKind.BACKUP_VERIFY,), queued_for=timedelta(seconds=lease_seconds)
    )
    for operation in stalled:
        if kit.claim(operation.id) is None:
            continue
        if kit.cancel_requested(operation.id):
            kit.mark_cancelled(operation.id, message="cancelled: the backup was left as it was")
        else:
            kit.fail(operation.id, STALLED_ERROR)
        ended.append(operation.id)
    return ended
