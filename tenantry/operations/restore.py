"""Restoring a backup: the ``restore`` operation.

A planned restore (:mod:`~tenantry.services.backups.restore_plan`) is recorded as an operation
and claimed by this process; its lease is renewed from a thread, and a store restored in place
has its writes blocked until that lease ends (:class:`.block_lease.BlockLease`). Then: a pinned
safety backup of a live target, the backup restored into a staging database (progress in bytes)
and checked, and the switch (:mod:`~tenantry.services.backups.restore_switch`); master's
catalog, the store's counters and the audit entry are recorded afterwards in one transaction.

``tenantry ops cancel`` is honoured up to the switch (at each progress report and just before
it): the staging copy is dropped and the target is left as it was. A restore whose process dies
leaves a running operation whose lease lapses; the workers' recovery sweep
(:func:`recover_stalled_restore`) ends it ``failed`` with what to do, lifts the write block
and drops the staging copy it can find; the target keeps its data.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from tenantry.backup import artifacts
from tenantry.backup.storage import Storage
from tenantry.crypto import SecretBox
from tenantry.db.admin import drop_database
from tenantry.db.master.models import (
    IntegrationConfig,
    Operation,
    OperationKind,
    OperationStatus,
    ProgressUnit,
    Store,
)
from tenantry.db.schemas import Role, schema_for
from tenantry.db.shared_schemas import drop_schema, schema_of, whole_database
from tenantry.db.urls import backend_of, mask
from tenantry.errors import TenantryError
from tenantry.operations import audited
from tenantry.operations.backup_take import take_backup
from tenantry.operations.block_lease import BlockLease
from tenantry.operations.byte_progress import ByteReporter, Stopped
from tenantry.operations.kit import LostClaim, OperationKit
from tenantry.operations.running import error_message
from tenantry.services import runtime_access
from tenantry.services.backups.restore_plan import RestorePlan
from tenantry.services.backups.restore_schema import restore_schema_and_switch, staging_schema
from tenantry.services.backups.restore_switch import restore_and_switch, staging_url
from tenantry.services.backups.restoring import (
    RestoreResult,
    block_reason,
    catalog_rows,
    check_confirm,
    record_restored,
    safety_target,
)
from tenantry.services.backups.scratch_sweep import backup_params
from tenantry.services.backups.verification import get_backup
from tenantry.services.connections import migrator_url
from tenantry.settings import Settings


class RestoreCancelled(TenantryError):
    """The restore was asked to stop (``tenantry ops cancel``) before its switch."""


def restore(
    sessions: sessionmaker[Session],
    storage: Storage,
    settings: Settings,
    plan: RestorePlan,
    *,
    confirm: str | None,
    actor: str,
    on_progress: artifacts.Progress | None = None,
    before_switch: Callable[[], None] | None = None,
    on_start: Callable[[uuid.UUID], None] | None = None,
) -> RestoreResult:
    """Carry out ``plan`` as a ``restore`` operation: safety backup, staging restore and
    check, then the switch.

    ``confirm`` must equal the plan's ``confirm_name`` when the target is live.
    ``before_switch`` runs just before the target is replaced (the CLI closes its own
    connections to master there when master itself is the target); ``on_start`` is told the
    operation's id once it is recorded. A failure or a cancel raises, the operation ended
    ``failed`` or ``cancelled`` and the target as it was.
    """
    check_confirm(plan, confirm)
    with sessions() as session:
        backup = get_backup(session, plan.backup_id)
    kit = OperationKit.from_settings(sessions, settings)
    operation_id = kit.create(
        OperationKind.RESTORE,
        store_id=backup.store_id,
        target=f"backup {backup.id} into {plan.target_shown}"[:255],
        params=backup_params(backup.id),  # the sweep keeps its scratch database
        requested_by=actor,
        step="queued",
        total=backup.size_bytes,
        unit=ProgressUnit.BYTES,
    )
    if on_start is not None:
        on_start(operation_id)
    kit.claim(operation_id)
    progress = ByteReporter(kit, operation_id, also=on_progress)
    run = _Run(kit, operation_id, progress)
    lease = BlockLease(kit, operation_id, plan.store_id, block_reason(backup.id, operation_id))
    # A shared-schema store's schema is swapped for a staging one while the neighbours go
    # on: its writes are blocked for the switch alone, its role granted in the switch.
    schema_role = _schema_role(sessions, plan)
    runtime = None if schema_role is not None else _runtime_login(sessions, plan)
    started = time.perf_counter()
    lease.start()
    try:
        safety_id = None
        if plan.live:
            run.step("safety_backup")
            safety_id = take_backup(
                sessions,
                storage,
                safety_target(settings, backup, plan),
                reason="safety",
                label=f"before restoring {backup.id}",
                pinned=True,
                actor=actor,
                level=settings.backup_zstd_level,
                audited=False,  # the restore's own entry names it
            ).id
        # Read after the safety backup, so its own catalog row survives a restore of master.
        with sessions() as session:
            catalog = catalog_rows(session, backup)
        if schema_role is None:
            lease.block()
        run.step("restore")

        def switching() -> None:
            run.step("switch")  # the last point where a cancel request is honoured
            if schema_role is not None:
                lease.block()
            if backup.role == Role.MASTER:
                # The switch replaces master itself: nothing may write to it meanwhile, and
                # the operation's row is put back afterwards.
                lease.stop()
                run.saved = _row_of(kit.get(operation_id))
            if runtime is not None and backend_of(plan.target) == "postgresql":
                # The staging database becomes the store's by a rename: the store's runtime
                # login needs its grants there before, or routing fails until they are given.
                runtime_access.grant_current(staging_url(plan.target, backup.id), *runtime)
            if before_switch is not None:
                before_switch()

        if schema_role is not None:
            spec = schema_for(backup.role, settings.tenant_schema)
            counts = restore_schema_and_switch(
                storage, backup, plan.target, spec, schema_role, progress, switching
            )
        else:
            counts = restore_and_switch(storage, backup, plan.target, progress, switching)
        if runtime is not None:  # MySQL's grants follow the name; PostgreSQL's are there
            runtime_access.grant_current(plan.target, *runtime)
    except Stopped:  # asked to stop while the backup streamed into the staging copy
        lease.lift(bump_connection=plan.store_id is not None)
        cancelled = run.cancelled()
        _end_failed(kit, operation_id, cancelled)
        raise cancelled from None
    except BaseException as exc:
        lease.lift(bump_connection=plan.store_id is not None)
        _end_failed(kit, operation_id, exc)
        if backup.role != Role.MASTER:  # a failed master restore may have left no master
            audited.record_failure(
                sessions,
                exc,
                actor=actor,
                action="backup.restored",
                target_type="database",
                target_id=plan.confirm_name,
                store_id=backup.store_id,
                details={"backup": str(backup.id)},
            )
        raise
    lease.lift(bump_connection=plan.store_id is not None)
    with kit.sessions.begin() as session:
        if run.saved is not None:
            session.merge(Operation(**run.saved))
        record_restored(
            session, backup, plan, counts, catalog=catalog, safety_id=safety_id, actor=actor
        )
    kit.finish(operation_id, message=f"restored {sum(counts.values())} rows")
    return RestoreResult(
        backup.id,
        plan.target_shown,
        time.perf_counter() - started,
        safety_id,
        counts,
        operation_id,
    )


def _schema_role(sessions: sessionmaker[Session], plan: RestorePlan) -> str | None:
    """The tenant role of the shared-schema store restored in place, if that is the target."""
    if plan.store_id is None or schema_of(plan.target) is None:
        return None
    with sessions() as session:
        config = (
            session.query(IntegrationConfig)
            .filter_by(store_id=plan.store_id, is_active=True)
            .first()
        )
        if config is None or not config.db_schema:
            return None
        return str(config.config_data["role"])


def _runtime_login(
    sessions: sessionmaker[Session], plan: RestorePlan
) -> tuple[str, uuid.UUID, str] | None:
    """The slug, id and current runtime login of the store restored in place, if it has one."""
    if plan.store_id is None:
        return None
    with sessions() as session:
        store = session.get(Store, plan.store_id)
        config = (
            session.query(IntegrationConfig)
            .filter_by(store_id=plan.store_id, is_active=True)
            .first()
        )
        login = runtime_access.current_login(config)
        if store is None or login is None:
            return None
        return store.slug, store.id, login


@dataclass
class _Run:
    """A restore in progress: its steps recorded on its operation (its bytes by a
    :class:`~tenantry.operations.byte_progress.ByteReporter`)."""

    kit: OperationKit
    operation_id: uuid.UUID
    streamed: ByteReporter
    #: The operation's row, kept while master itself is replaced.
    saved: dict[str, Any] | None = None

    def step(self, name: str) -> None:
        """Record a new step; a cancel request raises :class:`RestoreCancelled`."""
        if self.kit.progress(self.operation_id, step=name, current=self.streamed.done):
            raise self.cancelled()

    def cancelled(self) -> RestoreCancelled:
        """What a cancelled restore says."""
        return RestoreCancelled(
            f"the restore (operation {self.operation_id}) was cancelled before its switch; "
            "the target was not changed and the staging copy is dropped."
        )


def _row_of(operation: Operation) -> dict[str, Any]:
    return {c.key: getattr(operation, c.key) for c in Operation.__table__.columns}


def _end_failed(kit: OperationKit, operation_id: uuid.UUID, exc: BaseException) -> None:
    """End the operation ``cancelled`` or ``failed`` with what went wrong (no secret)."""
    try:
        if isinstance(exc, RestoreCancelled):
            kit.mark_cancelled(operation_id, message=exc.message)
        elif isinstance(exc, KeyboardInterrupt):
            kit.fail(operation_id, "interrupted before the switch; the target was not changed.")
        else:
            kit.fail(operation_id, error_message(exc))
    except LostClaim:
        pass  # taken over meanwhile (the recovery sweep): it records how it ended


# ---------------------------------------------------------------------- dead restores


def recover_stalled_restore(
    sessions: sessionmaker[Session], box: SecretBox, settings: Settings, operation_id: uuid.UUID
) -> str | None:
    """End restore ``operation_id`` whose process died (its lease lapsed): the write block it
    set is lifted, the staging copy dropped where its URL is known (in place), the operation
    ``failed`` with what to do (``cancelled`` if it was asked to stop). Its final status, or
    None when it is not stalled."""
    kit = OperationKit.from_settings(sessions, settings)
    claim = kit.claim(operation_id)
    if claim is None:
        return None
    operation = kit.get(operation_id)
    backup_id = _backup_of(operation)
    dropped = None
    with kit.sessions.begin() as session:
        store = session.get(Store, operation.store_id) if operation.store_id else None
        if store is not None and (store.write_block_reason or "").endswith(
            f"(operation {operation_id})"
        ):
            store.write_block_reason = None
            store.write_block_until = None
            store.connection_version += 1  # the switch may have replaced its database
        target = _in_place_url(session, box, settings, operation, store)
    if target is not None and backup_id is not None and (schema := schema_of(target)):
        # A shared-schema store's staging copy is a schema of its shared database.
        staging_name = staging_schema(schema, backup_id)
        try:
            drop_schema(whole_database(target), str(target.database), staging_name)
            dropped = f"schema {staging_name}"
        except Exception:
            dropped = None
    elif target is not None and backup_id is not None:
        staging = staging_url(target, backup_id)
        try:
            drop_database(staging)
            dropped = mask(staging)
        except Exception:
            dropped = None
    step = operation.step or "start"
    if step == "switch":
        said = (
            f"its process stopped during the switch of {operation.target}: the target holds "
            "either its previous data or the backup's. Check it (and its safety backup, if one "
            "was taken) before writing to it; run the restore again to be sure."
        )
    else:
        said = (
            f"its process stopped at step {step}, before the switch: the target was not "
            "changed and takes writes again. Run the restore again."
        )
    if dropped:
        said += f" The staging copy {dropped} was dropped."
    if claim.cancel_requested:
        kit.mark_cancelled(operation_id, message=said)
        return OperationStatus.CANCELLED
    kit.fail(operation_id, said)
    return OperationStatus.FAILED


def _backup_of(operation: Operation) -> uuid.UUID | None:
    """The backup a restore operation restores (named first in its target)."""
    words = (operation.target or "").split()
    try:
        return uuid.UUID(words[1]) if len(words) > 1 and words[0] == "backup" else None
    except ValueError:
        return None


def _in_place_url(
    session: Session,
    box: SecretBox,
    settings: Settings,
    operation: Operation,
    store: Store | None,
) -> Any:
    """The URL of the target a restore replaced in place (master, billing, the store's
    database), to find its staging copy; None for another target (its URL is not kept)."""
    shown = (operation.target or "").split(" into ", 1)[-1]
    candidates = [settings.master_url, settings.billing_url]
    if store is not None:
        config = (
            session.query(IntegrationConfig).filter_by(store_id=store.id, is_active=True).first()
        )
        if config is not None:
            candidates.append(migrator_url(session, box, config))
    return next((url for url in candidates if mask(url) == shown), None)
