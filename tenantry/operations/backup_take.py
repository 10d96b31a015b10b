"""Taking a backup as an operation (kind ``backup``): claim, dump, check, record; or clean up.

The catalog row (:mod:`tenantry.services.backups.taking`) shares the operation's id. Steps:
``identify`` (the database is the one it should be) → ``dump`` (bytes streamed into storage,
progress in bytes) → ``check`` (read back: size and hash) → ``manifest`` → ``record`` (the
catalog row says ``stored``, in the same transaction as the step) → succeeded. A cancel request
is honoured at every step boundary and between chunks of the dump; a cancelled, failed or
interrupted take removes what reached storage and leaves its catalog row ``failed``.

A take can not be resumed half-way (a dump is one stream): when its process dies, the
recovery sweep (:func:`recover_stalled`, from ``Queue.recover``) claims it once its lease has
lapsed, removes the partial object and fails it with a message saying to run
``tenantry backup run`` again; one whose catalog row was already recorded ``stored`` is
finished instead.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Update
from sqlalchemy.orm import Session, sessionmaker

from tenantry.backup import artifacts
from tenantry.backup.storage import Storage
from tenantry.db.engines import writer_sessions
from tenantry.db.master.models import Backup, OperationKind, OperationStatus, ProgressUnit
from tenantry.errors import Conflict, NotFound, TenantryError
from tenantry.failpoints import failpoint
from tenantry.operations.audited import attempt, not_audited
from tenantry.operations.byte_progress import ByteReporter, Stopped
from tenantry.operations.kit import LostClaim, OperationKit
from tenantry.services.backups import taking
from tenantry.services.backups.targets import BackupTarget, identify, scope_of
from tenantry.settings import load_settings

log = logging.getLogger("tenantry.backups")


class BackupCancelled(TenantryError):
    """The backup was stopped on request before it was stored; nothing of it was kept."""


def kit_for(sessions: sessionmaker[Session], lease_seconds: float | None) -> OperationKit:
    """The kit for backup operations on master's ``sessions``."""
    lease = lease_seconds if lease_seconds is not None else load_settings().job_lease_seconds
    return OperationKit(sessions, lease_seconds=lease)


def take_backup(
    sessions: sessionmaker[Session],
    storage: Storage,
    target: BackupTarget,
    *,
    reason: str = "manual",
    label: str | None = None,
    pinned: bool = False,
    actor: str,
    level: int = 3,
    on_progress: artifacts.Progress | None = None,
    queued_id: uuid.UUID | None = None,
    lease_seconds: float | None = None,
    tracked: bool = True,
    audited: bool = True,
) -> Backup:
    """Back up ``target`` into ``storage``; the catalog row of the stored backup.

    ``queued_id`` takes the backup :func:`~tenantry.services.backups.taking.queue_backup`
    recorded (:class:`Conflict` when another process has it). Without ``tracked`` no operation
    is recorded (a master older than the operations table: a pre-migration backup). Raises the
    failure, after cleaning up and recording the backup as failed; :class:`BackupCancelled`
    when it was asked to stop. Audited as ``backup.run`` unless not ``audited`` (a
    pre-migration backup: the migration's own entry names it).
    """
    writes = writer_sessions(sessions)
    kit = kit_for(sessions, lease_seconds) if tracked else None
    if queued_id is None:
        record = taking.queue_backup if tracked else taking.new_backup
        with writes.begin() as session:
            queued_id = record(
                session, storage, target, reason=reason, label=label, pinned=pinned, actor=actor
            ).id
    else:
        with sessions() as session:  # the run is the requester's (a queued API backup)
            actor = session.get_one(Backup, queued_id).created_by
    take = _Take(kit, writes, storage, queued_id)
    take.claim()
    scope = not_audited if not audited else attempt
    with scope(
        writes,
        actor=actor,
        action="backup.run",
        target_type="backup",
        target_id=str(queued_id),
        store_id=target.store_id,
        details={"scope": target.scope, "reason": reason},
    ):
        take.run(target, level, on_progress)
    with sessions() as session:
        return session.get_one(Backup, queued_id)


@dataclass
class _Take:
    """One take of backup ``id``, held through ``kit`` (None: untracked)."""

    kit: OperationKit | None
    writes: sessionmaker[Session]
    storage: Storage
    id: uuid.UUID
    key: str = ""
    manifest_key: str = ""

    def claim(self) -> None:
        """Hold the take's operation, or raise why not."""
        with self.writes() as session:
            found = taking.keys_of(session, self.id)
        if found is None:
            raise NotFound(f"no backup {self.id} in the catalog.")
        _, self.key, self.manifest_key = found
        if self.kit is None:
            return
        claim = self.kit.claim(self.id)
        if claim is None:
            with self.writes.begin() as session:  # cancelled while queued: say so in the catalog
                taking.settle_orphans(session, self.id)
            raise Conflict(f"backup {self.id} is no longer queued; another worker took it.")
        if claim.cancel_requested:
            self._cancelled()
        if claim.attempts > 1:  # its last holder died mid-dump: a stream cannot be resumed
            self._fail(taking.STALLED_ERROR)
            raise TenantryError(taking.STALLED_ERROR)

    def run(self, target: BackupTarget, level: int, on_progress: artifacts.Progress | None) -> None:
        """Dump, check, record; on any failure clean up, record it, and raise it."""
        try:
            with self._kept_alive():
                identity, revision = identify(target)
                self._step(
                    "dump",
                    record=taking.started(self.id, identity.instance_id, revision),
                    current=0,
                )
                progress = ByteReporter(self.kit, self.id, on_progress)
                written, info = taking.write_artifact(
                    self.storage, target, self.key, level=level, on_progress=progress
                )
                failpoint("backup.written")
                self._step("check", current=written.raw_bytes, total=written.raw_bytes)
                # Good only once what storage holds is read back and matches what was sent.
                artifacts.check(
                    self.storage, self.key, size=written.size_bytes, sha256=written.sha256
                )
                values = taking.stored_values(written, info)
                with self.writes() as session:
                    name, manifest = taking.manifest_bytes(session, self.id, values, info, level)
                self._step("manifest")
                self.storage.put_bytes(name, manifest)
                self._step("record", record=taking.stored(self.id, values))
                if self.kit is not None:
                    self.kit.finish(self.id, message=f"stored {written.size_bytes} bytes")
        except Stopped:
            self._cancelled()
        except LostClaim:
            raise  # another process holds it now (the sweep): it cleans up
        except BaseException as exc:
            self._fail(taking.error_text(exc))
            raise

    @contextlib.contextmanager
    def _kept_alive(self) -> Iterator[None]:
        # The dump may run long between progress reports (a tool's start, a big table).
        if self.kit is None:
            yield
            return
        with self.kit.kept_alive(self.id):
            yield

    def _step(
        self,
        step: str,
        *,
        record: Update | None = None,
        current: int | None = None,
        total: int | None = None,
    ) -> None:
        """Record reaching ``step`` (with ``record`` on the catalog); :class:`Stopped` when
        the operation was asked to stop (then ``record`` is not written)."""
        if self.kit is None:
            if record is not None:
                with self.writes.begin() as session:
                    session.execute(record)
            return
        fields: dict[str, object] = {"unit": ProgressUnit.BYTES}
        if current is not None:
            fields["current"] = current
        if total is not None:
            fields["total"] = total
        if self.kit.progress(self.id, step, record=record, **fields):  # type: ignore[arg-type]
            raise Stopped

    def _cancelled(self) -> None:
        taking.discard(self.storage, self.key, self.manifest_key)
        assert self.kit is not None  # only a recorded operation can be asked to stop
        self.kit.mark_cancelled(
            self.id,
            message="cancelled: nothing was kept",
            record=taking.failed(self.id, taking.CANCELLED_ERROR),
        )
        raise BackupCancelled(
            f"backup {self.id} was cancelled before it was stored; nothing was kept.",
            "Run `tenantry backup run` again when a backup is wanted.",
        )

    def _fail(self, error: str) -> None:
        taking.discard(self.storage, self.key, self.manifest_key)
        with self.writes.begin() as session:
            session.execute(taking.failed(self.id, error))
        if self.kit is not None:
            with contextlib.suppress(LostClaim):  # the sweep got it first: it records it
                self.kit.fail(self.id, error, message="failed: nothing was kept")


def recover_stalled(
    sessions: sessionmaker[Session],
    storage: Storage,
    *,
    lease_seconds: float,
    queued_for: timedelta,
) -> tuple[list[tuple[uuid.UUID, str]], list[uuid.UUID]]:
    """The recovery sweep's part for takes: the queued ones nobody took for ``queued_for``
    (to enqueue again, with their scope), and the ids of held ones whose process died, now
    cleaned up (partial object removed) and failed, or finished if already recorded stored."""
    kit = kit_for(sessions, lease_seconds)
    writes = writer_sessions(sessions)
    lost: list[tuple[uuid.UUID, str]] = []
    ended: list[uuid.UUID] = []
    with writes.begin() as session:
        taking.settle_orphans(session)
    for stalled in kit.find_stalled(kinds=(OperationKind.BACKUP,), queued_for=queued_for):
        with sessions() as session:
            row = session.get(Backup, stalled.id)
            scope = None if row is None else scope_of(row)
        if stalled.status == OperationStatus.QUEUED and scope is not None:
            lost.append((stalled.id, scope))
            continue
        if kit.claim(stalled.id) is None:
            continue  # taken meanwhile
        ended.append(stalled.id)
        _end_stalled(kit, writes, storage, stalled.id, row)
    return lost, ended


def _end_stalled(
    kit: OperationKit,
    writes: sessionmaker[Session],
    storage: Storage,
    backup_id: uuid.UUID,
    row: Backup | None,
) -> None:
    if row is not None and taking.is_good(row.status):
        kit.finish(backup_id, message="stored (finished by the recovery sweep)")
        return
    if row is not None:
        taking.discard(storage, row.artifact_key, row.manifest_key)
    if kit.cancel_requested(backup_id):
        kit.mark_cancelled(
            backup_id,
            message="cancelled: nothing was kept",
            record=taking.failed(backup_id, taking.CANCELLED_ERROR),
        )
        return
    with writes.begin() as session:
        session.execute(taking.failed(backup_id, taking.STALLED_ERROR))
    kit.fail(backup_id, taking.STALLED_ERROR, message="failed: its process stopped")
    log.info("backup %s: its process stopped; cleaned up and failed", backup_id)
