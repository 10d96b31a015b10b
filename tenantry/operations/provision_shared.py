"""Asking for a store's own schema in a shared PostgreSQL database (``--shared``).

Shared provisioning is a provisioning job like any other (mode ``create_shared``): recorded in
master, then handed to a dispatcher (a worker, or this process), listed by ``tenantry jobs``,
``tenantry ops`` and ``GET /operations``, run under a lease and resumed after a kill. Its steps
are :mod:`.provision_shared_run`'s.

A store has one provisioning under way at a time: a second request is a :class:`Conflict`
naming the first, except when the first's process was killed (on this host, or its lease
lapsed): then the request hands that job over again, and it resumes where it stopped.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from tenantry.db import shared_schemas as shared
from tenantry.db.master.models import OperationStatus, ProvisioningMode, ProvisioningStatus
from tenantry.db.types import utcnow
from tenantry.errors import Conflict, InvalidInput, OperationFailed
from tenantry.operations.dispatch import Dispatcher, InProcessDispatcher
from tenantry.operations.lease_takeover import release_if_holder_died
from tenantry.operations.provision_request import Requested
from tenantry.runtime import Platform
from tenantry.services import provisioning, servers, stores
from tenantry.services.connections import server_url
from tenantry.services.permissions import ensure_may_write


@dataclass(frozen=True)
class SharedProvisioned:
    """Where a shared-schema store was provisioned."""

    slug: str
    server: str
    database: str
    schema: str
    instance_id: str
    tables: int


def parse_target(target: str) -> tuple[str, str]:
    """``SERVER[/DATABASE]`` as (server name, database name; the default when none)."""
    server, _, database = target.strip().partition("/")
    if not server:
        raise InvalidInput(
            f"--shared {target!r} names no server.",
            "Give a registered PostgreSQL server, optionally with a database: "
            "--shared pg or --shared pg/tenantry_shared_2.",
        )
    return server, shared.check_name(database or shared.DEFAULT_DATABASE, "shared database name")


def request_shared(
    platform: Platform,
    dispatcher: Dispatcher,
    ref: str | uuid.UUID,
    target: str,
    *,
    actor: str,
) -> Requested:
    """Record a ``create_shared`` job giving store ``ref`` (slug or id) its own schema in
    shared database ``target`` (``SERVER[/DATABASE]``) and hand it to ``dispatcher``.

    Refuses (nothing recorded) a store that has a database or a live job already, an unknown
    or inactive server, and any backend but PostgreSQL. The store's unfinished shared job
    whose process died is handed over again instead (same target only)."""
    ensure_may_write("provision a store")
    server_name, database = parse_target(target)
    resumed = _resumable(platform, ref, server_name, database)
    if resumed is not None:
        dispatcher.enqueue_provision(resumed.job_id)
        return resumed
    with platform.writer_sessions.begin() as session:
        store = stores.get_store(session, ref, lock=True)  # one request per store at a time
        provisioning.refuse_provisioned(session, store)
        server = servers.get_server(session, server_name)
        if not server.is_active:
            raise Conflict(
                f"server {server.name!r} is not active.",
                "Reactivate it, or give another registered PostgreSQL server to --shared.",
            )
        shared.refuse_backend(server_url(platform.box, server), f"server {server.name!r}")
        job = provisioning.request_provisioning(
            session,
            platform.box,
            platform.settings,
            store,
            mode=ProvisioningMode.CREATE_SHARED,
            server=server,
            shared_database=database,
            actor=actor,
        )
        requested = Requested(job.id, job.public_status, store.id, store.slug)
    dispatcher.enqueue_provision(requested.job_id)
    return requested


def _resumable(
    platform: Platform, ref: str | uuid.UUID, server: str, database: str
) -> Requested | None:
    """The store's unfinished shared job, when the process running it is gone (killed on
    this host, or its lease lapsed): to hand over again. A job for another target is a
    :class:`Conflict`; a live one is left to :func:`provisioning.refuse_provisioned`."""
    with platform.sessions() as session:
        store = stores.get_store(session, ref)
        job = stores.active_job(session, store)
        if job is None or job.mode != ProvisioningMode.CREATE_SHARED:
            return None
        where = job.destination or {}
        if (where.get("server"), where.get("database")) != (server, database):
            raise Conflict(
                f"store {store.slug!r} has unfinished shared provisioning job {job.id} into "
                f"{where.get('server')}/{where.get('database')}.",
                f"Run it again with --shared {where.get('server')}/{where.get('database')}, "
                f"or cancel it: `tenantry jobs cancel {job.id}`.",
            )
        found = Requested(job.id, ProvisioningStatus.RUNNING, store.id, store.slug)
        lapsed = (
            job.operation_status == OperationStatus.RUNNING
            and job.lease_expires_at is not None
            and job.lease_expires_at <= utcnow()
        )
    if lapsed or release_if_holder_died(platform.sessions, platform.master_engine, found.job_id):
        return found
    return None


def provision_shared_store(
    platform: Platform, ref: str | uuid.UUID, target: str, *, actor: str
) -> SharedProvisioned:
    """Give store ``ref`` its own schema in shared database ``target`` as a job run here, to
    its end (see :func:`request_shared`); where it went. A job that fails or is cancelled
    raises its error (its schema and role are gone, the store as it was)."""
    runner = InProcessDispatcher(platform, name="app:")
    requested = request_shared(platform, runner, ref, target, actor=actor)
    return shared_outcome(platform, requested.job_id)


def shared_outcome(platform: Platform, job_id: uuid.UUID) -> SharedProvisioned:
    """Where finished ``create_shared`` job ``job_id`` put its store; raises the job's error
    when it did not complete."""
    with platform.sessions() as session:
        job = provisioning.get_job(session, job_id)
        store = stores.get_store(session, job.store_fk)
        config = stores.active_connection(session, store)
        where = job.destination or {}
        if job.public_status != ProvisioningStatus.COMPLETED or config is None:
            raise OperationFailed(
                f"provisioning store {store.slug!r} into {where.get('database')} "
                f"{job.public_status}: {job.error or job.message}",
                f"See `tenantry jobs show {job.id}`; the store may be provisioned again.",
            )
        return SharedProvisioned(
            store.slug,
            str(where.get("server")),
            str(where.get("database")),
            str(config.db_schema),
            str(config.instance_id),
            int(job.total_tables or 0),
        )
