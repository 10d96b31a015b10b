"""How a provisioning job ends when it does not complete: cancelled, taken over, or failed.

A cancelled job's worker (or, when it died, the recovery sweep that claims the job once its
lease ran out) drops the database the job created, unless a saved connection points at it,
then ends the job cancelled; a drop that fails keeps the job cancelling, to be tried again. A
failed job drops what it created too and records its error, free of credentials.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from sqlalchemy import update

from tenantry.db import admin
from tenantry.db.master.models import (
    OperationStatus,
    ProvisioningJob,
    ProvisioningMode,
    ProvisioningStatus,
    Store,
    provisioning_status,
)
from tenantry.db.spares import drop_spare_login
from tenantry.errors import TenantryError
from tenantry.operations import provision_shared_run, provision_spare
from tenantry.operations.kit import LostClaim
from tenantry.operations.provision_ownership import made_by
from tenantry.operations.running import error_message
from tenantry.services import provisioning_records, runtime_access
from tenantry.services.provisioning import CANCELLED_AND_DROPPED
from tenantry.services.stores import active_connection

if TYPE_CHECKING:
    from tenantry.operations.provision import Provisioner

JOB = provisioning_records.JOB_TABLE


def after_lost(runner: Provisioner, job: ProvisioningJob) -> str:
    """The job stopped being ``runner``'s to run: cancelled (drop what it created, then end
    it cancelled), or taken over by another worker. Its status as jobs show it."""
    with runner.reads() as session:
        current = session.get(ProvisioningJob, job.id)
        if current is None:
            return "deleted"
        status, holder = current.operation_status, current.lease_holder
        session.expunge(current)
    if status != OperationStatus.CANCELLING or holder != runner.worker_id:
        return provisioning_status(status)
    dropped = drop_created(runner, job)
    if not dropped and job.database_created and _target_exists(runner, job):
        # The drop failed: keep the job cancelling; once the lease lapses, the recovery
        # sweep claims it and tries again.
        return ProvisioningStatus.CANCELLED
    record = update(JOB).where(JOB.c.id == job.id).values(database_created=False)
    with contextlib.suppress(LostClaim):
        runner.kit.mark_cancelled(
            job.id, message=CANCELLED_AND_DROPPED if dropped else "cancelled", record=record
        )
    return ProvisioningStatus.CANCELLED


def drop_created(runner: Provisioner, job: ProvisioningJob) -> bool:
    """Drop the database ``job`` created (a ``create_shared`` job's schema and role),
    unless a saved connection points at it; True when it was dropped."""
    if job.mode == ProvisioningMode.CONNECT_EXISTING or not job.database_created:
        return False
    with runner.reads() as session:
        store = session.get(Store, job.store_id)
        if store is not None and active_connection(session, store) is not None:
            return False
    if job.mode == ProvisioningMode.CREATE_SHARED:
        try:
            return provision_shared_run.drop_created(runner, job)
        except TenantryError:
            return False
    try:
        url = runner.new_database_url(job)
        spare = provision_spare.claimed_url(runner, job, url)
        # Only the database it made: another may be at the store's name (a rename that met
        # it, one put there while the job was down).
        dropped = made_by(job, url, runner.spec) and admin.drop_database(url)
        if spare is not None:  # claimed, and maybe not yet renamed to the store's name
            dropped = admin.drop_database(spare) or dropped
            drop_spare_login(spare)
        if store is not None:  # the runtime logins it may have made go with the database
            runtime_access.drop_store_logins(url, store.slug, store.id)
        return dropped
    except TenantryError:
        return False


def _target_exists(runner: Provisioner, job: ProvisioningJob) -> bool:
    try:
        if job.mode == ProvisioningMode.CREATE_SHARED:
            return provision_shared_run.schema_exists(runner, job)
        return made_by(job, runner.new_database_url(job), runner.spec)
    except TenantryError:
        return True  # cannot tell: keep it recorded


def fail(runner: Provisioner, job: ProvisioningJob, exc: Exception) -> str:
    """End ``job`` failed with ``exc``, after dropping the database it created; ``skipped``
    when another worker holds it now."""
    # The error is readable by the store's own API key: credentials are masked.
    message = error_message(exc)
    dropped = drop_created(runner, job)
    with runner.sessions.begin() as session:
        recorded = provisioning_records.record_failure(
            session, job, worker_id=runner.worker_id, error=message, dropped=dropped
        )
    return ProvisioningStatus.FAILED if recorded else "skipped"
