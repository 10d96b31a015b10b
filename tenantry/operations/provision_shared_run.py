"""The steps of a ``create_shared`` provisioning job: a store's own schema in a shared
PostgreSQL database, run by the :class:`~tenantry.operations.provision.Provisioner` like any
provisioning job (claimed under a lease, progress in master, resumed after a kill).

Steps, each idempotent: connect (create the shared database when missing, and its pool login
under a lock of that database, the login's password recorded sealed on the job before it is
set) → create_schema (the store's schema and NOLOGIN role; the job records that it created
them before it does) → inspect / create_tables / migrate / seed inside the schema (the
provisioner's own steps, on an admin connection confined to the schema) → grant (the role's
DML on the tables) → save the connection (pool login, schema, role) and mark the store active,
one master transaction. A failure or a cancel drops the schema and role the job created
(:mod:`.provision_cleanup`) and gives the store back its status from before the job.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Engine, update

from tenantry.db import migrations
from tenantry.db import shared_schemas as shared
from tenantry.db.admin import create_database
from tenantry.db.engines import make_engine
from tenantry.db.login_secrets import generate_password
from tenantry.db.master.models import AccessMode, ProvisioningJob, ProvisioningStatus, Store
from tenantry.failpoints import failpoint
from tenantry.operations import provision_cleanup as cleanup
from tenantry.services import provisioning, provisioning_records
from tenantry.services.connections import split_url
from tenantry.services.provisioning import SharedTarget

if TYPE_CHECKING:
    from tenantry.operations.provision import Provisioner

JOB = provisioning_records.JOB_TABLE
#: How long a job waits for another one setting up the same shared database's pool login.
POOL_LOCK_WAIT_S = 30.0


def run(runner: Provisioner, job: ProvisioningJob, store: Store) -> str:
    """Run (or resume) claimed ``create_shared`` job ``job`` of ``store`` to its end; its
    final status."""
    from tenantry.operations.provision import LostJob

    engine: Engine | None = None
    try:
        with runner.reads() as session:
            target = provisioning.shared_target(session, runner.box, job)
        password = _step_connect(runner, job, target)
        _step_schema(runner, job, target)
        engine = make_engine(target.schema_url, pool_size=1)
        runner.step_inspect_and_build(job, engine)
        identity = runner.step_migrate(job, engine)
        runner.step_seed(job, store, engine)
        _step_grant(runner, job, target)
        _step_save(runner, job, target, password, identity)
        return ProvisioningStatus.COMPLETED
    except LostJob:
        return cleanup.after_lost(runner, job)
    except Exception as exc:  # every failure is recorded on the job, never lost
        return cleanup.fail(runner, job, exc)
    finally:
        if engine is not None:
            engine.dispose()


def _step_connect(runner: Provisioner, job: ProvisioningJob, target: SharedTarget) -> str:
    """The shared database (created when missing) and its pool login; the login's password.

    The password master keeps for the database (an active store's, or an unfinished job's) is
    kept; when there is none a new one is sealed on this job, then set, all under a lock of
    the database, so two stores provisioned at once into a new database agree on it."""
    runner.update(
        job.id,
        step="connect",
        progress=5,
        message=f"connecting to shared database {target.database} on {target.server}",
    )
    failpoint("provision.connect")
    shared.refuse_backend(target.admin, f"server {target.server!r}")
    key = f"shared-pool:{target.server}/{target.database}"
    runner.kit.acquire_lock(key, operation_id=job.id, wait_s=POOL_LOCK_WAIT_S)
    try:
        create_database(target.admin.set(database=target.database))
        with runner.reads() as session:
            sealed, in_use = provisioning_records.shared_pool_secret(session, job)
        password = runner.box.open(sealed) if sealed else generate_password()
        if sealed is None:
            sealed = runner.box.seal(password)
            mine = update(JOB).where(JOB.c.id == job.id).values(secret_encrypted=sealed)
            runner.update(job.id, record=mine)
        # A password active stores connect with is the login's already: never set again.
        shared.ensure_pool_login(target.admin, target.database, password, set_password=not in_use)
    finally:
        runner.kit.release_lock(key)
    return password


def _step_schema(runner: Provisioner, job: ProvisioningJob, target: SharedTarget) -> None:
    """The store's schema and tenant role. A schema of the store's name this job did not
    create is a leftover of an earlier attempt for the same store (its name holds the
    store's id): dropped with its role and made again, unless it is another store's."""
    runner.update(
        job.id,
        step="create_schema",
        progress=10,
        message=f"creating schema {target.schema} and role {target.role}",
    )
    failpoint("provision.create_schema")
    if not job.database_created:
        if shared.schema_exists(target.admin, target.database, target.schema):
            _refuse_anothers(runner, target)
            runner.update(job.id, database_created=True, message="removing a half-made schema")
            shared.drop_tenant_schema(target.admin, target.database, target.schema, target.role)
        else:
            # Recorded before creating, so a crash right after still knows it is ours.
            runner.update(job.id, database_created=True)
        job.database_created = True
    shared.ensure_tenant_schema(target.admin, target.database, target.schema, target.role)


def _refuse_anothers(runner: Provisioner, target: SharedTarget) -> None:
    """Refuse a leftover schema whose identity is another store's active database."""
    from tenantry.db.engines import connect
    from tenantry.db.identity import read_identity

    engine = make_engine(target.schema_url, pooled=False)
    try:
        with connect(engine) as conn:
            identity = read_identity(conn)
    finally:
        engine.dispose()
    if identity is not None:
        with runner.reads() as session:
            provisioning_records.refuse_other_store(session, None, identity.instance_id)


def _step_grant(runner: Provisioner, job: ProvisioningJob, target: SharedTarget) -> None:
    runner.update(job.id, step="grant", progress=92, message=f"granting {target.role} its tables")
    failpoint("provision.grant")
    shared.grant_tables(target.admin, target.database, target.schema, target.role)


def _step_save(
    runner: Provisioner,
    job: ProvisioningJob,
    target: SharedTarget,
    password: str,
    instance_id: str,
) -> None:
    """Save the connection (pool login, schema, role) and mark the store active: one master
    transaction that also ends the job, if it is still ours."""
    from tenantry.operations.provision import LostJob

    failpoint("provision.save_connection")
    pool_url = target.admin.set(
        database=target.database, username=shared.pool_login(target.database), password=password
    )
    config_data, secret = split_url(runner.box, pool_url)
    config_data["role"] = target.role
    with runner.sessions.begin() as session:
        completed = provisioning_records.complete(
            session,
            job,
            worker_id=runner.worker_id,
            config_data=config_data,
            secret=secret,
            instance_id=instance_id,
            revision=migrations.head(runner.spec),
            access_mode=AccessMode.RUNTIME_LOGIN,
            can_ddl=False,
            db_schema=target.schema,
        )
    if not completed:
        raise LostJob(str(job.id))


def drop_created(runner: Provisioner, job: ProvisioningJob) -> bool:
    """Drop the schema and role ``job`` created (never the shared database, which may hold
    other stores); True when the schema was there."""
    with runner.reads() as session:
        target = provisioning.shared_target(session, runner.box, job)
    return shared.drop_tenant_schema(target.admin, target.database, target.schema, target.role)


def schema_exists(runner: Provisioner, job: ProvisioningJob) -> bool:
    """Whether the schema ``job`` provisions is there."""
    with runner.reads() as session:
        target = provisioning.shared_target(session, runner.box, job)
    return shared.schema_exists(target.admin, target.database, target.schema)
