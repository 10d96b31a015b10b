"""Keeping the spare database pools full, current and bounded (the scheduler's refill).

Each registered PostgreSQL server has a pool of at most ``TENANTRY_SPARE_DATABASES`` spares
cloned from the current template (SQLite has none, :mod:`tenantry.db.spares` says why: its
pool's bound is 0, so a refill drops the spare files an earlier version made). A refill runs
under one exclusive lock (one refiller at a time across processes, so two racing refills never
fill a pool past its bound): it drops the spares of another template (a schema change: a new
head revision), the rows a killed refill left ``building``, and those beyond the bound, then
makes new ones until each pool is full. A spare's row is committed before its database is made
and removed after it is dropped, so no spare database is ever unrecorded for long. Never on a
request's path: the scheduler tick (and the bench, between stores) calls it.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field

from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from tenantry.crypto import SecretBox
from tenantry.db import admin, builder
from tenantry.db.engines import writer_sessions
from tenantry.db.master.models import SpareDatabase, SpareStatus
from tenantry.db.schemas import SchemaSpec
from tenantry.db.spares import (
    drop_spare_login,
    make_spare,
    new_spare_name,
    spare_url,
)
from tenantry.errors import Conflict, TenantryError
from tenantry.operations.kit import OperationKit
from tenantry.services import servers, spares
from tenantry.services.connections import server_url
from tenantry.settings import Settings

log = logging.getLogger("tenantry.spares")
#: The refill's exclusive lock.
REFILL_LOCK = "spare-pool-refill"


@dataclass
class RefillReport:
    """What one refill did: spares made and dropped per pool (``sqlite`` or a server name)."""

    made: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    #: Another refill held the lock: this one did nothing.
    skipped: bool = False


@dataclass(frozen=True)
class Pool:
    """One pool: where its spares live."""

    label: str  # "sqlite" or the server's name
    server_id: uuid.UUID | None
    admin_url: URL | None
    size: int  # how many ready spares it keeps


def _pools(session: Session, box: SecretBox, settings: Settings) -> list[Pool]:
    found = [Pool("sqlite", None, None, 0)]  # only an earlier version's spares, to drop
    for server in servers.list_servers(session):
        if server.is_active and server.engine == "postgresql":
            found.append(
                Pool(server.name, server.id, server_url(box, server), settings.spare_databases)
            )
    return found


def refill(
    sessions: sessionmaker[Session],
    box: SecretBox,
    settings: Settings,
    spec: SchemaSpec,
    *,
    holder: str | None = None,
) -> RefillReport:
    """Retire stale spares and fill every pool to ``TENANTRY_SPARE_DATABASES``; skipped (and
    nothing done) while another process refills."""
    report = RefillReport()
    kit = OperationKit(sessions, lease_seconds=settings.job_lease_seconds, holder=holder)
    try:
        kit.acquire_lock(REFILL_LOCK)
    except Conflict:
        report.skipped = True
        return report
    try:
        writes = writer_sessions(sessions)
        with sessions() as session:
            pools = _pools(session, box, settings)
        template = builder.template_name(spec)
        for pool in pools:
            try:
                _refill_pool(writes, box, settings, spec, pool, template, report)
            except TenantryError as exc:  # one unreachable server never stops the others
                report.errors.append(f"{pool.label}: {exc.message}")
                log.warning("spare pool %s: %s", pool.label, exc.message)
            kit.renew_lock(REFILL_LOCK)
    finally:
        kit.release_lock(REFILL_LOCK)
    return report


def _refill_pool(
    sessions: sessionmaker[Session],
    box: SecretBox,
    settings: Settings,
    spec: SchemaSpec,
    pool: Pool,
    template: str,
    report: RefillReport,
) -> None:
    with sessions() as session:
        have = spares.pool(session, pool.server_id)
        session.expunge_all()
    keep: list[SpareDatabase] = []
    for spare in have:
        # Under the lock, a row still building is a dead refill's: its database is unknown.
        current = spare.status == SpareStatus.READY and spare.template == template
        if current and len(keep) < pool.size:
            keep.append(spare)
        else:
            if _drop(sessions, settings, pool, spare):
                report.dropped[pool.label] = report.dropped.get(pool.label, 0) + 1
    for _ in range(pool.size - len(keep)):
        if not _make(sessions, box, settings, spec, pool, template):
            break
        report.made[pool.label] = report.made.get(pool.label, 0) + 1


def _make(
    sessions: sessionmaker[Session],
    box: SecretBox,
    settings: Settings,
    spec: SchemaSpec,
    pool: Pool,
    template: str,
) -> bool:
    name = new_spare_name()
    with sessions.begin() as session:
        spare_id = spares.reserve(session, pool.server_id, name, template)
    url = spare_url(pool.admin_url, settings.data_dir, name)
    made = False
    secret: str | None = None
    try:
        spare = make_spare(
            url, spec, settings.data_dir / "templates", settings.tenant_owner, str(spare_id)
        )
        made = spare is not None
        if spare is not None and spare.login_password is not None:
            secret = box.seal(spare.login_password)
    finally:
        with sessions.begin() as session:
            if made:
                made = spares.mark_ready(session, spare_id, secret)
            if not made:
                admin.drop_database(url)
                drop_spare_login(url)
                spares.forget(session, spare_id)
    return made


def _drop(
    sessions: sessionmaker[Session], settings: Settings, pool: Pool, spare: SpareDatabase
) -> bool:
    """Drop one spare; False when a store claimed it first (then it is the store's)."""
    if spare.status == SpareStatus.READY:
        with sessions.begin() as session:
            # Out of the claimable set first: a claimer and a drop never share a spare.
            if not spares.retire(session, spare.id):
                return False
    url = spare_url(pool.admin_url, settings.data_dir, spare.database_name)
    admin.drop_database(url)
    drop_spare_login(url)
    with sessions.begin() as session:
        spares.forget(session, spare.id)
    return True


def remove_server(
    sessions: sessionmaker[Session],
    box: SecretBox,
    settings: Settings,
    name: str,
    *,
    actor: str,
) -> int:
    """Unregister server ``name`` (refused while stores' databases live there) after dropping
    its spare databases; how many were dropped. Holds the refill's lock throughout, so no
    refill makes a spare there in between (its row would go with the server, its database
    would stay)."""
    kit = OperationKit(sessions, lease_seconds=settings.job_lease_seconds)
    kit.acquire_lock(REFILL_LOCK, wait_s=LOCK_WAIT_S)
    try:
        with sessions() as session:
            server = servers.get_server(session, name)
            servers.refuse_removal(session, server)
            pool = Pool(server.name, server.id, server_url(box, server), 0)
            have = spares.pool(session, server.id)
            session.expunge_all()
        writes = writer_sessions(sessions)
        dropped = sum(_drop(writes, settings, pool, spare) for spare in have)
        with writes.begin() as session:
            servers.remove_server(session, name, actor=actor)
        return dropped
    finally:
        kit.release_lock(REFILL_LOCK)


#: How long removing a server waits for a refill to end.
LOCK_WAIT_S = 60.0
