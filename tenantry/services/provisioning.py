"""Provisioning jobs (seed 001 ``DatabaseProvisioningService``): asking for one, cancelling,
listing, and where a job's database is.

A provisioning job is an operation (kind ``provision``) whose own record says how to reach the
database (mode, destination, sealed secret). Running it is :mod:`tenantry.operations.provision`:
the steps in the tenant database are :mod:`.tenant_setup`'s, what a run writes in master
:mod:`.provisioning_records`'. A worker that dies stops renewing the job's lease, and once it
expires the job is picked up again (see :func:`recoverable_jobs`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from tenantry.crypto import SecretBox
from tenantry.db import shared_schemas
from tenantry.db.master.models import (
    DatabaseServer,
    DatabaseStatus,
    OperationKind,
    OperationStatus,
    ProgressUnit,
    ProvisioningJob,
    ProvisioningMode,
    ProvisioningStatus,
    Store,
)
from tenantry.db.master.models.provisioning import OPERATION_STATUSES
from tenantry.db.urls import parse_url, require_driver
from tenantry.errors import (
    Conflict,
    InvalidInput,
    NotFound,
)
from tenantry.services import audit, refs
from tenantry.services.connections import join_url, server_url, split_url
from tenantry.services.operation_rows import cancel_in, stalled_query
from tenantry.services.stores import active_connection, active_job
from tenantry.settings import Settings

ACTIVE = (OperationStatus.QUEUED, OperationStatus.RUNNING)
#: Jobs over (or being cancelled) that may have left a database they created behind.
LEFT_BEHIND = (OperationStatus.CANCELLING, OperationStatus.CANCELLED, OperationStatus.FAILED)
#: A queued job older than this may have lost its queue message: the sweep enqueues it again.
QUEUED_GRACE_S = 5.0


def tenant_database_name(store: Store) -> str:
    """The database name tenantry gives a store on a server: readable, unique, ≤ 63 chars."""
    return f"t_{store.slug[:50].replace('-', '_')}_{store.id.hex[:8]}"


def tenant_sqlite_path(settings: Settings, store: Store) -> Path:
    """Where tenantry puts a store's SQLite database in the data dir."""
    return (settings.data_dir / "tenants" / f"{store.slug}-{store.id.hex[:8]}.db").resolve()


def request_provisioning(
    session: Session,
    box: SecretBox,
    settings: Settings,
    store: Store,
    *,
    mode: ProvisioningMode,
    server: DatabaseServer | None = None,
    url: str | None = None,
    actor: str,
    url_field: str = "url",
    shared_database: str | None = None,
) -> ProvisioningJob:
    """Create a queued job for ``store`` (the caller enqueues it after committing).

    ``create_new`` makes a database on ``server`` (or a SQLite file in the data dir);
    ``connect_existing`` uses the database at ``url``, never dropping anything in it;
    ``create_shared`` gives the store its own schema in ``shared_database`` on PostgreSQL
    ``server`` (the caller checked the backend). ``url_field`` names the URL in errors
    (``url`` in a request body, ``--connect``).
    """
    refuse_provisioned(session, store)
    secret: str | None = None
    target: dict[str, Any]
    if mode is ProvisioningMode.CREATE_SHARED:
        if server is None or shared_database is None or url:
            raise InvalidInput("create-shared takes a server and a shared database, not a URL.")
        target = shared_destination(store, server, shared_database)
    elif mode is ProvisioningMode.CREATE_NEW:
        if url:
            raise InvalidInput("create-new takes a server, not a URL; use connect for a URL.")
        if server is None:
            target = {
                "engine": "sqlite",
                "path": str(tenant_sqlite_path(settings, store)),
            }
        else:
            admin_url = server_url(box, server)
            target, _ = split_url(box, admin_url.set(database=tenant_database_name(store)))
            target["server"] = server.name
    else:
        if not url or server is not None:
            raise InvalidInput("connect-existing takes the URL of the database to connect.")
        parsed = parse_url(url, setting=url_field)
        require_driver(parsed)
        target, secret = split_url(box, parsed)
    store.database_status = DatabaseStatus.PROVISIONING
    job = ProvisioningJob(
        kind=OperationKind.PROVISION,
        store_id=store.id,
        store_fk=store.id,
        target=store.slug,
        requested_by=actor,
        mode=mode,
        operation_status=OperationStatus.QUEUED,
        step="queued",
        progress=0,
        message="waiting for a worker",
        database_server_id=server.id if server else None,
        destination=target,
        secret_encrypted=secret,
        progress_current=0,
        progress_total=0,
        progress_unit=ProgressUnit.TABLES,
        attempts=0,
    )
    session.add(job)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="store.provision",
        target_type="provisioning_job",
        target_id=str(job.id),
        store_id=store.id,
        details={"mode": str(mode), "target": public_target(target)},
    )
    return job


def shared_destination(store: Store, server: DatabaseServer, database: str) -> dict[str, Any]:
    """Where a ``create_shared`` job puts ``store``: its schema and role in ``database`` on
    ``server``, and the store's database status before the job (given back if it fails)."""
    return {
        "engine": "postgresql",
        "server": server.name,
        "database": shared_schemas.check_name(database, "shared database name"),
        "schema": shared_schemas.schema_name(store.slug, store.id),
        "role": shared_schemas.tenant_role(store.slug, store.id),
        "previous_status": store.database_status,
    }


def refuse_provisioned(session: Session, store: Store) -> None:
    """Refuse to provision ``store`` again: it has a job under way or a database already."""
    running = active_job(session, store)
    if running is not None:
        raise Conflict(
            f"store {store.slug!r} already has provisioning job {running.id} ({running.status}).",
            f"Follow it with `tenantry jobs show {running.id}`.",
        )
    if active_connection(session, store) is not None:
        raise Conflict(
            f"store {store.slug!r} is provisioned already.",
            "Delete the store first to start over, or move it to another server.",
        )


def public_target(target: dict[str, Any]) -> dict[str, Any]:
    """A job's destination or a connection's data without what is secret."""
    return {k: v for k, v in target.items() if k not in {"password", "query"}}


def cancel_job(session: Session, job: ProvisioningJob, *, actor: str) -> ProvisioningJob:
    """Cancel a queued or running job; a running one stops at its next step and cleans up
    (until then it shows as cancelled, its operation as cancelling)."""
    if job.operation_status not in ACTIVE:
        raise Conflict(
            f"job {job.id} is {job.public_status}; only queued or running jobs can be cancelled."
        )
    cancel_in(session, job)
    job.message = "cancelled"
    store = session.get(Store, job.store_id)
    if store is not None and store.database_status == DatabaseStatus.PROVISIONING:
        store.database_status = status_after_failure(job)
    audit.record(
        session,
        actor=actor,
        action="job.cancel",
        target_type="provisioning_job",
        target_id=str(job.id),
        store_id=job.store_id,
    )
    return job


def status_after_failure(job: ProvisioningJob) -> str:
    """The database status a store gets back when ``job`` fails or is cancelled: the one it had
    before a ``create_shared`` job (nothing of it is left), ``failed`` after the others."""
    if job.mode == ProvisioningMode.CREATE_SHARED and job.destination:
        return str(job.destination.get("previous_status") or DatabaseStatus.FAILED)
    return DatabaseStatus.FAILED


def get_job(session: Session, job_id: str | uuid.UUID) -> ProvisioningJob:
    """The job with id ``job_id``, or whose id starts with it."""
    return refs.find(
        session,
        ProvisioningJob,
        job_id,
        what="provisioning job",
        hint="List jobs with `tenantry jobs list`.",
    )


def list_jobs(
    session: Session,
    *,
    store: Store | None = None,
    status: str | None = None,
    limit: int = 50,
) -> list[tuple[ProvisioningJob, str]]:
    """Jobs with their store's slug, newest first."""
    query = select(ProvisioningJob, Store.slug).join(Store, Store.id == ProvisioningJob.store_id)
    if store is not None:
        query = query.where(ProvisioningJob.store_id == store.id)
    if status is not None:
        query = query.where(
            ProvisioningJob.status.in_(OPERATION_STATUSES[ProvisioningStatus(status)])
        )
    rows = session.execute(query.order_by(ProvisioningJob.created_at.desc()).limit(limit))
    return [(job, slug) for job, slug in rows]


#: A cancelled job's message once the database it made is gone.
CANCELLED_AND_DROPPED = "cancelled (the database it created was removed)"


def recoverable_jobs(
    session: Session, *, queued_grace_s: float = QUEUED_GRACE_S
) -> list[uuid.UUID]:
    """Jobs a worker should (re)start: held with an expired lease (their worker died; a
    cancelled one still has its database to drop) and queued ones older than a few seconds
    (their queue message may be lost)."""
    query = stalled_query(
        kinds=(OperationKind.PROVISION,), queued_for=timedelta(seconds=queued_grace_s)
    )
    return [row.id for row in session.execute(query)]


def target_url(session: Session, box: SecretBox, job: ProvisioningJob) -> URL:
    """The URL of the database ``job`` provisions (with its password: never shown)."""
    assert job.destination is not None
    if job.mode == ProvisioningMode.CONNECT_EXISTING:
        return join_url(box, job.destination, job.secret_encrypted)
    return new_database_url(session, box, job)


@dataclass(frozen=True)
class SharedTarget:
    """Where a ``create_shared`` job puts its store: the server's admin URL (a secret), the
    shared database, the store's schema and its tenant role."""

    server: str
    admin: URL
    database: str
    schema: str
    role: str

    @property
    def schema_url(self) -> URL:
        """The admin URL confined to the store's schema (its DDL, identity, version table)."""
        return shared_schemas.schema_url(self.admin, self.database, self.schema)


def shared_target(session: Session, box: SecretBox, job: ProvisioningJob) -> SharedTarget:
    """Where ``create_shared`` job ``job`` puts its store (raises when its server is gone)."""
    assert job.destination is not None
    server = session.get(DatabaseServer, job.database_server_id)
    if server is None:
        raise NotFound("the job's database server was removed.")
    d = job.destination
    return SharedTarget(
        server.name,
        server_url(box, server),
        str(d["database"]),
        shared_schemas.check_name(str(d["schema"]), "schema name"),
        shared_schemas.check_name(str(d["role"]), "role name"),
    )


def sqlite_file_url(job: ProvisioningJob) -> URL | None:
    """The URL of the SQLite file a create-new ``job`` makes; None when its database is on a
    server (or not a new one)."""
    target = job.destination or {}
    if job.mode != ProvisioningMode.CREATE_NEW or target.get("engine") != "sqlite":
        return None
    return parse_url(f"sqlite:///{target['path']}", setting="tenant path")


def new_database_url(session: Session, box: SecretBox, job: ProvisioningJob) -> URL:
    """The URL of the database a create-new ``job`` makes: a SQLite file, or a database on
    the job's server."""
    assert job.destination is not None
    if (file := sqlite_file_url(job)) is not None:
        return file
    return server_database_url(session, box, job.database_server_id, job.destination)


def server_database_url(
    session: Session, box: SecretBox, server_id: uuid.UUID | None, destination: dict[str, Any]
) -> URL:
    """The URL of the database named in a job's ``destination`` on server ``server_id``
    (with the server's admin credentials: a secret)."""
    server = session.get(DatabaseServer, server_id) if server_id is not None else None
    if server is None:
        raise NotFound("the job's database server was removed.")
    return server_url(box, server).set(database=destination["database"])
