"""What a provisioning job's claim reads and records, in the transaction that claims it.

The claim (:meth:`tenantry.operations.kit.OperationKit.claim`) reads the job and its store on
its own connection. For the first run of a create-new job whose database does not exist yet,
it also records there that the job creates it (claiming a spare when the job takes one), so
the connect step needs no master transaction of its own. Whether a server's database is
missing is asked before the claim (a server is never asked while master's claim is held);
a job that may take a spare is not asked at all: renaming the spare finds out.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from tenantry.db import admin
from tenantry.db.master.models import OperationStatus, ProvisioningJob, ProvisioningMode, Store
from tenantry.errors import NotFound
from tenantry.operations import provision_spare as spare_path
from tenantry.services import provisioning
from tenantry.services.spares import ClaimedSpare

if TYPE_CHECKING:
    from tenantry.operations.provision import Provisioner


@dataclass(frozen=True)
class Creating:
    """What a job's claim recorded: it creates its database at ``url``, or took ``spare``."""

    url: URL
    spare: ClaimedSpare | None


@dataclass(frozen=True)
class Absent:
    """What was known before a job's claim of the database it creates on a server: its URL,
    and whether the server said nothing is there (``checked``), or nobody asked (a job that
    may take a spare, whose rename finds out)."""

    url: URL
    checked: bool


def loader(
    runner: Provisioner, job_id: uuid.UUID, absent: Absent | None
) -> Callable[[Connection], Any]:
    """Reads the job and its store (detached) on the claim's connection, and for a fresh
    create-new job whose database is not there yet, records there that it creates it
    (:func:`creating`; ``absent``: what was known before the claim); NotFound is returned,
    not raised, so the claim holds and the job can be ended."""

    def load(conn: Connection) -> Any:
        with Session(bind=conn, expire_on_commit=False) as session:
            job = session.get(ProvisioningJob, job_id)
            if job is None:
                return NotFound(f"no provisioning job {job_id}.")
            store = session.get(Store, job.store_id)
            if store is None:
                return NotFound(f"the store of job {job_id} was deleted.")
            session.expunge_all()
        return job, store, creating(runner, conn, job, absent)

    return load


def absent_before_claim(runner: Provisioner, job_id: uuid.UUID) -> Absent | None:
    """For a create-new job not yet run whose database goes on a server: where it goes,
    when no database is there (asked before the claim: a server is never asked while
    master's claim is held, and only this store's jobs make that database, one at a time),
    or unasked when the job may take a spare (:mod:`.provision_spare`: renaming it finds
    out, and without one the claim records nothing). None for every other job, and when it
    cannot be told: a server that cannot be reached (or was removed) is met again by the
    claimed run, which records it on the job; raised here, before the claim, it would leave
    the job queued and unexplained."""
    try:
        with runner.reads() as session:
            job = session.get(ProvisioningJob, job_id)
            if (
                job is None
                or job.mode != ProvisioningMode.CREATE_NEW
                or provisioning.sqlite_file_url(job) is not None
                or job.database_created
                or job.attempts != 0
                or job.operation_status != OperationStatus.QUEUED
            ):
                return None
            url = provisioning.new_database_url(session, runner.box, job)
        if spare_path.uses_pool(runner, job, url):
            return Absent(url, checked=False)
        return None if admin.database_exists(url) else Absent(url, checked=True)
    except Exception:  # see above: the run after the claim reports it
        return None


def creating(
    runner: Provisioner, conn: Connection, job: ProvisioningJob, absent: Absent | None
) -> Creating | None:
    """In the claiming transaction: when ``job`` is a first run of a create-new job whose
    database does not exist yet (a SQLite file looked at here, a server's database before
    the claim: ``absent``) or that takes a spare, record that it creates it (what the
    connect step's own transaction records otherwise: one master transaction fewer). None
    for every other job: its connect step looks at what is there."""
    url = provisioning.sqlite_file_url(job) or (absent.url if absent else None)
    if (
        url is None
        or job.database_created
        or (job.destination or {}).get("spare")
        or job.attempts != 1
        or job.operation_status != OperationStatus.RUNNING  # cancelling: cleaned up
        or (absent is None and admin.database_exists(url))  # a leftover: see connect
    ):
        return None
    unasked = absent is not None and not absent.checked
    spare = spare_path.write_creating(runner, job, url, conn, spare_only=unasked)
    if spare is None and unasked:
        return None  # no spare: the connect step looks at the server, then records it
    return Creating(url, spare)
