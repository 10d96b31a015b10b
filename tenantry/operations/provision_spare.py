"""Provisioning a create-new store from the spare pool (:mod:`tenantry.operations.spare_pool`).

The claim is one master transaction, the one that records the job is creating its database:
a ready spare's row is deleted, the job's record marks the database as its own and names the
spare and its id (``destination["spare"]``, ``["instance_id"]``), and its progress moves on. Then
the spare is renamed to the store's database name and, in one tenant transaction, its
unassigned identity replaced by the store's (keeping the spare's id as the instance id) and the
initial data written; the connection is saved when the job completes. A crash anywhere leaves
either the spare under its own name or the store's database stamped with the spare's id: the
job names it, so a resumed job drops it and starts again (:func:`discard`), and a failed or
cancelled job drops it with the rest (:mod:`.provision_cleanup`). No store ever points at an
unassigned database, and no claimed spare is left unrecorded.

The rename itself proves the store's name free (the server refuses to rename onto a database
that exists), so a job that may take a spare does not ask the server first; and a database
found at the store's name is dropped, or taken as the job's own, only when it carries the
claimed spare's id (:mod:`.provision_ownership`): another database there is never touched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Connection, bindparam, update
from sqlalchemy.engine import URL

from tenantry.db import admin, builder, logins
from tenantry.db.identity import SPARE_ROLE, read_identity
from tenantry.db.master.models import Operation, ProvisioningJob, ProvisioningMode, Store
from tenantry.db.server_connections import SERVERS
from tenantry.db.spares import (
    SPARE_BACKENDS,
    assign,
    drop_spare_login,
    move_into_place,
    rename_login,
    spare_url,
)
from tenantry.db.urls import backend_of, mask
from tenantry.errors import Conflict
from tenantry.failpoints import failpoint
from tenantry.operations.provision_ownership import made_by
from tenantry.services import provisioning_records, runtime_access, spares
from tenantry.services.connections import split_url
from tenantry.services.provisioning_records import instance_to_record, recorded_instance
from tenantry.services.runtime_access import RuntimeAccess
from tenantry.services.spares import ClaimedSpare

if TYPE_CHECKING:
    from tenantry.operations.provision import Provisioner

JOB = provisioning_records.JOB_TABLE
#: The job's progress once it holds a spare: the database is made, as after a template copy.
SEED_PROGRESS = 75


# Recording that a job creates its database is on every new store's path: the statements are
# built once, their values bound at each run.
_AT_CONNECT = (
    update(Operation)
    .where(Operation.id == bindparam("b_job"))
    .values(step=bindparam("b_step"), message=bindparam("b_message"))
)
_AT_SEED = _AT_CONNECT.values(
    progress_current=bindparam("b_current"), progress_total=bindparam("b_total")
)
_CREATING = (
    update(JOB)
    .where(JOB.c.id == bindparam("b_job"))
    .values(
        database_created=bindparam("b_created"),
        progress=bindparam("b_progress"),
        target=bindparam("b_target"),
    )
)


def pooled_engine(runner: Provisioner, engine: str | None) -> bool:
    """Whether databases of ``engine`` come from the spare pool (a pooled backend, a pool
    wanted)."""
    return runner.settings.spare_databases > 0 and engine in SPARE_BACKENDS


def may_use_pool(runner: Provisioner, job: ProvisioningJob) -> bool:
    """Whether ``job`` may take a spare: create-new, and its database is a pooled one."""
    return job.mode == ProvisioningMode.CREATE_NEW and pooled_engine(
        runner, (job.destination or {}).get("engine")
    )


def claimed_url(runner: Provisioner, job: ProvisioningJob, url: URL) -> URL | None:
    """Where the spare ``job`` claimed is under its own name (``url``: the store's)."""
    name = (job.destination or {}).get("spare")
    if not name:
        return None
    return spare_url(None if backend_of(url) == "sqlite" else url, runner.settings.data_dir, name)


def record_creating(runner: Provisioner, job: ProvisioningJob, url: URL) -> ClaimedSpare | None:
    """Record that ``job`` creates its database (one master transaction), claiming a ready
    spare in the same transaction when the pool has one; the spare, or None (the caller
    makes the database)."""
    claimed: list[ClaimedSpare | None] = []
    runner.update(
        job.id, record=lambda conn: claimed.append(write_creating(runner, job, url, conn))
    )
    spare = claimed[0] if claimed else None
    recorded_creating(job, spare)
    return spare


def recorded_creating(job: ProvisioningJob, spare: ClaimedSpare | None) -> None:
    """Bring ``job`` (detached) up to what :func:`write_creating` committed."""
    job.database_created = True
    job.destination = {**(job.destination or {}), **_recorded(job, spare)}


def _recorded(job: ProvisioningJob, spare: ClaimedSpare | None) -> dict[str, str]:
    """What a job's record keeps as it records that it creates its database: the instance id
    the database will carry and, when it took one, the spare's name."""
    named = {"spare": spare.database_name} if spare is not None else {}
    return {**named, **instance_to_record(job, str(spare.id) if spare is not None else None)}


def write_creating(
    runner: Provisioner,
    job: ProvisioningJob,
    url: URL,
    conn: Connection,
    *,
    spare_only: bool = False,
) -> ClaimedSpare | None:
    """On ``conn``, in a transaction that holds ``job`` (its claim, or a progress write):
    record that the job creates its database, at the connect step, claiming a ready spare
    when the pool has one (then the job is at the seed step: the database is made). The
    spare, or None (the caller makes the database); once committed, the caller brings ``job``
    up to date (:func:`recorded_creating`). ``spare_only``: nobody has looked whether a
    database is at ``url``, so without a spare (whose rename would find out) nothing is
    recorded and None is returned."""
    tables = len(runner.spec.metadata.sorted_tables)
    template = builder.template_name(runner.spec)
    pooled = may_use_pool(runner, job)
    spare = spares.claim_ready(conn, job.database_server_id, template) if pooled else None
    if spare is None and spare_only:
        return None
    # The database is made (a spare), or is made with its identity and initial data in one
    # go (a SQLite file, tenantry.db.sqlite_prepared): then the job is at the seed step.
    made = spare is not None or backend_of(url) == "sqlite"
    if made:
        message = (
            "claimed a spare database; stamping identity"
            if spare is not None
            else "copying the template with identity and initial data"
        )
        at = {"b_step": "seed", "b_current": tables, "b_total": tables, "b_message": message}
        conn.execute(_AT_SEED, {"b_job": job.id, **at})
    else:
        at = {"b_step": "connect", "b_message": "creating the database"}
        conn.execute(_AT_CONNECT, {"b_job": job.id, **at})
    recorded = {
        "b_job": job.id,
        "b_created": True,
        "b_progress": SEED_PROGRESS if made else 5,
        "b_target": {**(job.destination or {}), **_recorded(job, spare)},
    }
    conn.execute(_CREATING, recorded)
    return spare


def place(
    runner: Provisioner, job: ProvisioningJob, spare: ClaimedSpare, store: Store, url: URL
) -> RuntimeAccess | None:
    """Give the claimed spare the store's database name (nobody is connected to a spare),
    and its runtime login the store's login name: the connection to save, or None when the
    store gets its login the usual way (no spare login, or that name is taken)."""
    source = claimed_url(runner, job, url)
    assert source is not None
    failpoint("provision.spare.claimed")
    try:
        move_into_place(source, url)
    except Exception:
        if admin.database_exists(url) and not made_by(job, url, runner.spec):
            raise Conflict(
                f"database {mask(url)} exists already and this job did not create it; it was "
                "left as it is.",
                "To use it, provision with --connect URL instead; to make a new one, drop or "
                "rename that database first.",
            ) from None
        raise
    if spare.login_secret is None:
        return None
    chosen = runtime_access.store_logins(store.slug, store.id)[0]
    if not rename_login(url, spare.database_name, chosen):
        drop_spare_login(source)  # the usual way makes the store's own
        return None
    password = runner.box.open(spare.login_secret)
    config_data, secret = split_url(
        runner.box, logins.login_url(url, str(url.database), chosen, password)
    )
    return RuntimeAccess(chosen, config_data, secret)


def stamp_and_seed(runner: Provisioner, spare: ClaimedSpare, store: Store, url: URL) -> str:
    """Replace the spare's unassigned identity with the store's and write the initial data,
    in one transaction on the (renamed) database at ``url``; its instance id."""
    failpoint("provision.inspect")
    failpoint("provision.migrate")
    failpoint("provision.seed")
    with SERVERS.connect(url) as conn, conn.begin():
        return assign(conn, runner.spec, runner.settings.tenant_owner, str(spare.id), store)


def discard(runner: Provisioner, job: ProvisioningJob, url: URL) -> None:
    """A resumed job that had claimed a spare: drop what is left of it unassigned (under its
    own name, or already renamed to the store's but not yet stamped), so the job starts again
    from nothing. A database already stamped with the store's identity is kept."""
    source = claimed_url(runner, job, url)
    if source is None or not job.database_created:
        return
    admin.drop_database(source)
    drop_spare_login(source)
    if admin.database_exists(url) and _unassigned(job, url):
        admin.drop_database(url)


def _unassigned(job: ProvisioningJob, url: URL) -> bool:
    """Whether the database at ``url`` is the spare ``job`` claimed, not yet the store's."""
    with SERVERS.connect(url) as conn:
        found = read_identity(conn)
    recorded = recorded_instance(job)
    return (
        found is not None
        and found.role == SPARE_ROLE
        and (recorded is None or found.instance_id == recorded)
    )
