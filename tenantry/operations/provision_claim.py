"""What a provisioning job's claim reads and records, in the transaction that claims it.

The claim (:meth:`tenantry.operations.kit.OperationKit.claim`) reads the job and its store on
its own connection, in one statement. For the first run of a create-new job whose database
is a new SQLite file (looked at here), or that may take a spare of the pool, it also records
there that the job creates it (claiming the spare), so the connect step needs no master
transaction of its own. A server is never asked while master's claim is held: a job that
may take a spare does not ask at all (renaming the spare finds out whether the store's name
is taken; without a spare the connect step asks, then records it), and a job on a server
without a pool is asked before its claim (:func:`absent_before_claim`), so the claim records
it too.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, bindparam, select
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from tenantry.db import admin
from tenantry.db.master.models import (
    Operation,
    OperationStatus,
    ProvisioningJob,
    ProvisioningMode,
    Store,
)
from tenantry.errors import NotFound
from tenantry.operations import provision_spare as spare_path
from tenantry.services import provisioning, provisioning_records
from tenantry.services.spares import ClaimedSpare

JOB = provisioning_records.JOB_TABLE
# Read for every job, so built once (their values bound at each run).
_FRESH_JOB = (
    select(JOB.c.mode, JOB.c.target, JOB.c.database_server_id, JOB.c.database_created)
    .join(Operation.__table__, Operation.id == JOB.c.id)
    .where(
        JOB.c.id == bindparam("b_job"),
        Operation.attempts == 0,
        Operation.status == OperationStatus.QUEUED,
    )
)
_JOB_AND_STORE = (
    select(ProvisioningJob, Store)
    .outerjoin(Store, Store.id == ProvisioningJob.store_id)
    .where(ProvisioningJob.id == bindparam("b_job"))
)

if TYPE_CHECKING:
    from tenantry.operations.provision import Provisioner


@dataclass(frozen=True)
class Creating:
    """What a job's claim recorded: it creates its database at ``url``, or took ``spare``."""

    url: URL
    spare: ClaimedSpare | None


def absent_before_claim(runner: Provisioner, job_id: uuid.UUID) -> URL | None:
    """For a create-new job not yet run whose database goes on a server without a spare
    pool: where it goes, when the server says no database is there (asked before the claim,
    and only this store's jobs make that database, one at a time). None for every other job
    (one light read tells), and when it cannot be told: a server that cannot be reached (or
    was removed) is met again by the claimed run, which records it on the job; raised here,
    before the claim, it would leave the job queued and unexplained."""
    try:
        with runner.reads() as session:
            row = session.connection().execute(_FRESH_JOB, {"b_job": job_id}).one_or_none()
            if (
                row is None
                or row.mode != ProvisioningMode.CREATE_NEW
                or row.database_created
                or row.database_server_id is None
                or spare_path.pooled_engine(runner, (row.target or {}).get("engine"))
            ):
                return None
            url = provisioning.server_database_url(
                session, runner.box, row.database_server_id, row.target
            )
        return None if admin.database_exists(url) else url
    except Exception:  # see above: the run after the claim reports it
        return None


def loader(
    runner: Provisioner, job_id: uuid.UUID, absent: URL | None
) -> Callable[[Connection], Any]:
    """Reads the job and its store (detached) on the claim's connection, and for a fresh
    create-new job whose database is not there yet (``absent``: a server's database found
    missing before the claim) or that may take a spare, records there that it creates its
    database (:func:`creating`); NotFound is returned, not raised, so the claim holds and
    the job can be ended."""

    def load(conn: Connection) -> Any:
        with Session(bind=conn, expire_on_commit=False) as session:
            found = session.execute(_JOB_AND_STORE, {"b_job": job_id}).one_or_none()
            if found is None:
                return NotFound(f"no provisioning job {job_id}.")
            job, store = found.tuple()
            if store is None:
                return NotFound(f"the store of job {job_id} was deleted.")
            made = creating(runner, conn, session, job, absent)
            session.expunge_all()
        return job, store, made

    return load


def creating(
    runner: Provisioner,
    conn: Connection,
    session: Session,
    job: ProvisioningJob,
    absent: URL | None,
) -> Creating | None:
    """In the claiming transaction (``session`` reads on its connection ``conn``): when
    ``job`` is a first run of a create-new job whose database is not there yet (a SQLite
    file looked at here, a server's database before the claim: ``absent``) or that takes a
    ready spare, record that it creates it (what the connect step's own transaction records
    otherwise: one master transaction fewer). None for every other job: its connect step
    looks at what is there."""
    if (
        job.mode != ProvisioningMode.CREATE_NEW
        or job.database_created
        or (job.destination or {}).get("spare")
        or job.attempts != 1
        or job.operation_status != OperationStatus.RUNNING  # cancelling: cleaned up
    ):
        return None
    url = provisioning.sqlite_file_url(job) or absent
    if url is not None:
        if absent is None and admin.database_exists(url):  # a leftover: see connect
            return None
        return Creating(url, spare_path.write_creating(runner, job, url, conn))
    if not spare_path.may_use_pool(runner, job):
        return None
    url = provisioning.new_database_url(session, runner.box, job)
    # Nobody has looked whether a database is at ``url``: only a spare (whose rename finds
    # out) is recorded; without one, the connect step asks the server, then records it.
    spare = spare_path.write_creating(runner, job, url, conn, spare_only=True)
    return None if spare is None else Creating(url, spare)
