"""``import shared --queue``: each store's import handed to the workers.

:func:`queue_import` records what :meth:`SharedImport.record` records (the missing stores, one
queued ``import`` operation per store) and, in the same transaction, the source and mapping the
workers will read (:class:`~tenantry.db.master.models.ImportSource`, the URL sealed) with each
operation tied to it. A worker runs one store with :func:`run_queued_import`, exactly as the
command would in-process (:class:`~tenantry.operations.import_store.StoreImporter`: resumable,
verified, rolled back on failure); the last store to end deletes the source, so the shared
database's credentials stay in master only while there is work that needs them. The workers'
recovery sweep enqueues a queued import again when its worker died or its message was lost
(:func:`~tenantry.services.import_jobs.queued_imports`), instead of ending it as an import
whose command died.
"""

from __future__ import annotations

import logging
import uuid

from sqlalchemy import delete, exists, select

from tenantry.db.master.models import (
    ACTIVE_STATUSES,
    ImportJob,
    ImportSource,
    Operation,
    OperationKind,
)
from tenantry.db.master.models import Store as MasterStore
from tenantry.db.types import utcnow
from tenantry.db.urls import parse_url
from tenantry.imports.mapping import parse_mapping
from tenantry.imports.plan import ImportPlan
from tenantry.operations.import_shared import SharedImport
from tenantry.operations.kit import OperationKit
from tenantry.runtime import Platform
from tenantry.services.moves import describe

log = logging.getLogger("tenantry.jobs")


def queue_import(job: SharedImport, plan: ImportPlan) -> dict[str, uuid.UUID]:
    """Record ``plan`` for the workers (refused with its problems listed, if it has any):
    its stores' import operations, by slug; the caller enqueues each."""
    operations = job.record(plan)
    if not operations:
        return operations
    platform = job.platform
    ids = list(operations.values())
    with platform.writer_sessions.begin() as session:
        # Queued again (the same stores still pending): they read the source given now, and
        # a source no store reads any more is forgotten.
        earlier = set(
            session.scalars(select(ImportJob.source_id).where(ImportJob.operation_id.in_(ids)))
        )
        session.execute(delete(ImportJob).where(ImportJob.operation_id.in_(ids)))
        source = ImportSource(
            source_url=platform.box.seal(job.source_url.render_as_string(hide_password=False)),
            # Only what was set: a `constant: null` must stay, an absent key must not appear.
            mapping=job.mapping.model_dump(mode="json", by_alias=True, exclude_unset=True),
            server=job.server,
            batch_rows=job.batch_rows or 0,  # 0: each path's own default
            requested_by=job.actor,
        )
        session.add(source)
        session.flush()
        session.add_all(ImportJob(operation_id=op_id, source_id=source.id) for op_id in ids)
        for source_id in earlier:
            if not session.scalar(select(exists().where(ImportJob.source_id == source_id))):
                session.execute(delete(ImportSource).where(ImportSource.id == source_id))
    return operations


def run_queued_import(platform: Platform, operation_id: uuid.UUID) -> str:
    """Run (or resume) queued store import ``operation_id`` here; how it ended."""
    with platform.sessions() as session:
        found = session.execute(
            select(ImportSource, Operation, MasterStore.slug)
            .join(ImportJob, ImportJob.source_id == ImportSource.id)
            .join(Operation, Operation.id == ImportJob.operation_id)
            .join(MasterStore, MasterStore.id == Operation.store_id)
            .where(ImportJob.operation_id == operation_id)
        ).one_or_none()
        if found is None:  # ended, and its source forgotten, before this message came
            return "gone"
        source, operation, slug = found
        session.expunge_all()
    if operation.status not in ACTIVE_STATUSES:
        _forget_if_done(platform, source.id)
        return str(operation.status)
    lease_ends = operation.lease_expires_at
    if operation.lease_holder and lease_ends is not None and lease_ends > utcnow():
        return "skipped"  # a duplicate message: a live worker runs it
    try:
        job = SharedImport(
            platform,
            parse_url(platform.box.open(source.source_url), setting="the queued import's source"),
            parse_mapping(source.mapping, origin="the queued import's mapping"),
            source.requested_by,
            server=source.server,
            batch_rows=source.batch_rows or None,
        )
    except Exception as exc:  # a key retired without rotating, say: this store fails
        status = _give_up(platform, operation_id, describe(exc))
        _forget_if_done(platform, source.id)
        return status
    try:
        try:
            plan = job.plan(only=[slug], create_stores=True)  # provisioned here if not yet
        except Exception as exc:  # the source cannot be read any more: this store fails
            return _give_up(platform, operation_id, describe(exc))
        if plan.problems:  # the source changed since it was queued
            problems = "; ".join(p.describe() for p in plan.problems[:5])
            return _give_up(platform, operation_id, f"the source has problems now: {problems}")
        return job.run(plan, operations={slug: operation_id})[0].status
    finally:
        job.close()
        _forget_if_done(platform, source.id)


def _give_up(platform: Platform, operation_id: uuid.UUID, error: str) -> str:
    """End ``operation_id`` failed before it copied anything; "failed"."""
    kit = OperationKit.from_settings(platform.writer_sessions, platform.settings)
    if kit.claim(operation_id) is not None:
        kit.fail(operation_id, error)
    return "failed"


def _forget_if_done(platform: Platform, source_id: uuid.UUID) -> None:
    """Delete source ``source_id`` (its sealed URL) once none of its imports is unfinished."""
    unfinished = exists().where(
        ImportJob.source_id == source_id,
        Operation.id == ImportJob.operation_id,
        Operation.kind == OperationKind.IMPORT,
        Operation.status.in_(ACTIVE_STATUSES),
    )
    with platform.writer_sessions.begin() as session:
        if session.scalar(select(unfinished)):
            return
        session.execute(delete(ImportJob).where(ImportJob.source_id == source_id))
        session.execute(delete(ImportSource).where(ImportSource.id == source_id))
    log.info("import source %s: every store import ended; its URL is forgotten", source_id)
