"""What a provisioning run writes in master, in the transactions its operation opens.

Taking over a database an earlier job of the same store left behind, refusing a database that
is another store's, saving the connection that completes a job, and recording the failure that
ends one. Each function takes the caller's session and says, by its result, whether the job was
still the caller's to write (a job cancelled or taken over meanwhile is left as it is).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Table, bindparam, insert, select, update
from sqlalchemy.orm import Session

from tenantry.db.master.models import (
    AccessMode,
    DatabaseStatus,
    IntegrationConfig,
    Operation,
    OperationKind,
    OperationStatus,
    ProvisioningJob,
    ProvisioningMode,
    Store,
)
from tenantry.db.types import utcnow
from tenantry.errors import NotFound, WrongDatabase
from tenantry.observability import metrics
from tenantry.services import audit
from tenantry.services.operation_rows import lease_lapsed
from tenantry.services.provisioning import LEFT_BEHIND, public_target, status_after_failure
from tenantry.services.stores import active_connection_id

#: A job whose worker may still use what it recorded.
UNFINISHED = (OperationStatus.QUEUED, OperationStatus.RUNNING, OperationStatus.CANCELLING)
#: The provisioning job's own table (its operation's columns are in ``operations``).
JOB_TABLE = cast(Table, ProvisioningJob.__table__)
#: The key of the instance id in a job's record (``destination``): the id the database the
#: job creates carries (tenantry.operations.provision_ownership).
INSTANCE_KEY = "instance_id"
#: The keys of a job's record that say what this job made, not where its database goes.
_MADE_KEYS = frozenset({INSTANCE_KEY, "spare"})


def instance_to_record(job: ProvisioningJob, spare_id: str | None) -> dict[str, str]:
    """What ``job``'s record keeps, as it records that it creates its database, of the
    instance id that database will carry: the spare's it claimed, or the job's own id."""
    return {INSTANCE_KEY: spare_id or str(job.id)}


def recorded_instance(job: ProvisioningJob) -> str | None:
    """The instance id ``job`` recorded for the database it creates (None: it creates none
    yet, or recorded it before ids were kept)."""
    found = (job.destination or {}).get(INSTANCE_KEY)
    return str(found) if found else None


def target_of(job: ProvisioningJob) -> dict[str, Any]:
    """Where ``job``'s database goes, without what the job itself made there."""
    return {k: v for k, v in (job.destination or {}).items() if k not in _MADE_KEYS}


def leftover_owner(session: Session, job: ProvisioningJob) -> ProvisioningJob | None:
    """The earlier, finished job of ``job``'s store that created a database at the same target
    and left it behind, if any (its worker's lease is over); detached."""
    earlier = session.scalars(
        select(ProvisioningJob).where(
            ProvisioningJob.store_id == job.store_id,
            ProvisioningJob.id != job.id,
            ProvisioningJob.status.in_(LEFT_BEHIND),
            ProvisioningJob.database_created.is_(True),
            lease_lapsed(utcnow()),
        )
    ).all()
    owner = next((e for e in earlier if target_of(e) == target_of(job)), None)
    if owner is not None:
        session.expunge(owner)
    return owner


def release_leftover(session: Session, owner: uuid.UUID) -> bool:
    """Clear job ``owner``'s claim on the database it created; True for the one caller that
    cleared it (only that caller takes the database over)."""
    taken = cast(
        CursorResult[Any],
        session.execute(
            update(JOB_TABLE)
            .where(JOB_TABLE.c.id == owner, JOB_TABLE.c.database_created.is_(True))
            .values(database_created=False)
        ),
    )
    return taken.rowcount == 1


def refuse_other_store(session: Session, store_id: uuid.UUID | None, instance_id: str) -> None:
    """Raise :class:`WrongDatabase` when the database with identity ``instance_id`` is the
    active database of a store other than ``store_id``."""
    other = session.scalar(
        select(Store.slug)
        .join(IntegrationConfig, IntegrationConfig.store_id == Store.id)
        .where(
            IntegrationConfig.instance_id == instance_id,
            IntegrationConfig.is_active.is_(True),
            Store.id != store_id,
        )
    )
    if other is not None:
        raise WrongDatabase(
            f"that database is already the database of store {other!r}; nothing was changed.",
            "Each store needs its own database.",
        )


# The completion is on every store's path: its statements are built once, with their values
# bound at each run (building and keying a statement costs more than executing it).
_END_JOB = (
    update(Operation)
    .where(
        Operation.id == bindparam("b_job"),
        Operation.status == OperationStatus.RUNNING,
        Operation.lease_holder == bindparam("b_worker"),
    )
    .values(
        status=OperationStatus.SUCCEEDED,
        step="done",
        message="the store database is ready",
        lease_expires_at=None,
        finished_at=bindparam("b_now"),
    )
)
_JOB_DONE = (
    update(JOB_TABLE)
    .where(JOB_TABLE.c.id == bindparam("b_job"))
    .values(progress=100, secret_encrypted=None)
)
_ACTIVATE_STORE = (
    update(Store)
    .where(Store.id == bindparam("b_store"))
    .values(
        database_type=bindparam("b_engine"),
        database_host=bindparam("b_host"),
        database_name=bindparam("b_name"),
        database_status=DatabaseStatus.ACTIVE,
        schema_revision=bindparam("b_revision"),
        connection_version=Store.connection_version + 1,
        last_activity_at=bindparam("b_now"),
    )
)
_CONNECTION_FIELDS = (
    "integration_type",
    "config_data",
    "secret_encrypted",
    "database_server_id",
    "created_by_tenantry",
    "instance_id",
    "access_mode",
    "can_ddl",
    "db_schema",
    "credentials_rotated_at",
)
_NEW_CONNECTION = insert(IntegrationConfig).values(
    store_id=bindparam("b_store"),
    is_active=True,
    **{name: bindparam(f"b_{name}") for name in _CONNECTION_FIELDS},
)
_SET_CONNECTION = (
    update(IntegrationConfig)
    .where(IntegrationConfig.id == bindparam("b_connection"))
    .values(**{name: bindparam(f"b_{name}") for name in _CONNECTION_FIELDS})
)


def complete(
    session: Session,
    job: ProvisioningJob,
    *,
    worker_id: str,
    config_data: dict[str, Any],
    secret: str | None,
    instance_id: str,
    revision: str | None,
    access_mode: str | None = None,
    can_ddl: bool | None = None,
    db_schema: str | None = None,
) -> bool:
    """Save the store's connection, mark the store active and the job succeeded, all in the
    caller's transaction (the connection is saved and the store active, or neither). False,
    with nothing written, when the job is no longer running under ``worker_id``.
    ``db_schema``: the store's schema in a shared database (a ``create_shared`` job)."""
    now = utcnow()
    store_id = job.store_fk
    conn = session.connection()
    # One statement checks the job is still this worker's and ends it.
    ended = conn.execute(_END_JOB, {"b_job": job.id, "b_worker": worker_id, "b_now": now})
    if cast(CursorResult[Any], ended).rowcount != 1:
        return False
    conn.execute(_JOB_DONE, {"b_job": job.id})
    activated = conn.execute(
        _ACTIVATE_STORE,
        {
            "b_store": store_id,
            "b_engine": config_data["engine"],
            "b_host": config_data.get("host"),
            "b_name": config_data.get("database") or config_data.get("path"),
            "b_revision": revision,
            "b_now": now,
        },
    )
    if cast(CursorResult[Any], activated).rowcount != 1:
        raise NotFound("the store was deleted while it was being provisioned.")
    connection = {
        "b_store": store_id,
        "b_integration_type": config_data["engine"],
        "b_config_data": config_data,
        "b_secret_encrypted": secret,
        "b_database_server_id": job.database_server_id,
        "b_created_by_tenantry": job.database_created,
        "b_instance_id": instance_id,
        "b_access_mode": access_mode,
        "b_can_ddl": can_ddl,
        "b_db_schema": db_schema,
        "b_credentials_rotated_at": now if access_mode == AccessMode.RUNTIME_LOGIN else None,
    }
    current = active_connection_id(conn, store_id)
    if current is None:
        conn.execute(_NEW_CONNECTION, connection)
    else:
        conn.execute(_SET_CONNECTION, {**connection, "b_connection": current})
    # ``started_at``: set by the claim the job was loaded with.
    _observe(job.started_at, now, OperationStatus.SUCCEEDED)
    audit.record_now(
        conn,
        actor=audit.WORKER,
        action="store.provisioned",
        target_type="store",
        target_id=job.target,
        store_id=store_id,
        details={"database": public_target(config_data), "worker_id": worker_id},
    )
    return True


def record_failure(
    session: Session, job: ProvisioningJob, *, worker_id: str, error: str, dropped: bool
) -> bool:
    """End ``job`` failed with ``error`` (already free of secrets) and mark its store's
    database failed; ``dropped``: the database it created was removed. False, with nothing
    written, when another worker holds the job."""
    current = session.get(ProvisioningJob, job.id)
    if current is None or current.lease_holder != worker_id:
        return False
    current.operation_status = OperationStatus.FAILED
    current.error = error
    current.message = "failed" + (" (the database it created was removed)" if dropped else "")
    current.finished_at = utcnow()
    current.lease_expires_at = None
    current.secret_encrypted = None
    _observe(current.started_at, current.finished_at, OperationStatus.FAILED)
    if dropped:
        current.database_created = False
    store = session.get(Store, job.store_id)
    if store is not None and store.database_status == DatabaseStatus.PROVISIONING:
        store.database_status = status_after_failure(current)
    audit.record(
        session,
        actor=audit.WORKER,
        action="store.provisioned",
        target_type="store",
        target_id=store.slug if store is not None else None,
        store_id=job.store_id,
        details={"worker_id": worker_id, "dropped": dropped},
        outcome=audit.Outcome.FAILED,
    )
    return True


def shared_pool_secret(session: Session, job: ProvisioningJob) -> tuple[str | None, bool]:
    """The sealed password of the pool login of ``create_shared`` job ``job``'s database, as
    master keeps it: an active store's of that database (then True: stores connect with it),
    else an unfinished shared job's that recorded it (``job``'s own after a crash); None when
    master keeps none."""
    assert job.destination is not None
    database = job.destination["database"]
    for config in session.scalars(
        select(IntegrationConfig).where(
            IntegrationConfig.database_server_id == job.database_server_id,
            IntegrationConfig.db_schema.is_not(None),
            IntegrationConfig.is_active.is_(True),
            IntegrationConfig.secret_encrypted.is_not(None),
        )
    ):
        if config.config_data.get("database") == database:
            return str(config.secret_encrypted), True
    for other in session.scalars(
        select(ProvisioningJob).where(
            ProvisioningJob.mode == ProvisioningMode.CREATE_SHARED,
            ProvisioningJob.database_server_id == job.database_server_id,
            ProvisioningJob.status.in_(UNFINISHED),
            ProvisioningJob.secret_encrypted.is_not(None),
        )
    ):
        if other.destination and other.destination.get("database") == database:
            return str(other.secret_encrypted), False
    return None, False


def _observe(started: datetime | None, ended: datetime, status: OperationStatus) -> None:
    """A job's duration in ``tenantry_operation_duration_seconds`` (it ends here, not
    through the operation kit)."""
    if started is not None:
        took = (ended - started).total_seconds()
        metrics.operation_ended(OperationKind.PROVISION.value, status.value, took)


def any_queued(session: Session) -> bool:
    """Whether a provisioning job is recorded that no worker runs yet (a backlog)."""
    found = session.scalar(
        select(Operation.id)
        .where(
            Operation.kind == OperationKind.PROVISION,
            Operation.status == OperationStatus.QUEUED,
        )
        .limit(1)
    )
    return found is not None
