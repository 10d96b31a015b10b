"""Recovering rows deleted by mistake (seed 004, disaster scenario 2), without a full restore.

The backup is restored into a scratch database (always dropped), the table's rows are read
from that copy (optionally filtered) in batches, and each batch's primary keys are looked up
in the live table with one ``WHERE pk IN (...)`` query: only rows whose key is absent from
the live database are kept. Rows present in both are never touched. The missing rows can be
written out for review (INSERT statements for the live database's dialect, or CSV) and
inserted into the live database in one transaction: all of them or none.

The checks are :mod:`~tenantry.services.backups.recovery_checks`; the ``recover_rows``
operation (:mod:`tenantry.operations.recover_rows`) runs a recovery and owns its transactions.

The live database is the backup's own (master, billing, or the store's current tenant
database), and its identity must carry the backup's instance id: rows are never merged into
another database.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Dialect,
    Row,
    Table,
    and_,
    insert,
    literal_column,
    select,
    tuple_,
)
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from tenantry.backup import artifacts
from tenantry.backup.storage import Storage
from tenantry.crypto import SecretBox
from tenantry.db.engines import connect, make_engine
from tenantry.db.master.models import Backup
from tenantry.db.readonly import read_only_engine
from tenantry.db.schemas import schema_for
from tenantry.db.urls import backend_of, mask, redact
from tenantry.errors import Conflict, InvalidInput
from tenantry.services import audit
from tenantry.services.backups.recovery_checks import (
    check_columns,
    check_where,
    live_target,
    recoverable_table,
)
from tenantry.services.backups.targets import BackupTarget, scratch_server
from tenantry.services.backups.verification import (
    get_backup,
    require_good,
    restore_artifact,
    scratch_database,
)
from tenantry.services.counters import StoreCounters, apply_counters
from tenantry.settings import Settings

#: Keys looked up in the live table per query (and rows inserted per statement).
BATCH = 1000
FORMATS = ("sql", "csv")

Status = Callable[[str], None]


@dataclass
class RowRecovery:
    """Rows of one table that a backup holds and the live database lacks."""

    backup_id: uuid.UUID
    backup_taken_at: datetime
    #: ``master``, ``billing`` or ``store:<slug>``: the live database the rows belong in.
    scope: str
    store_id: uuid.UUID | None
    #: The live database's URL, password masked.
    database: str
    table: Table
    where: str | None
    #: Rows of the table in the backup (matching ``where``).
    in_backup: int
    #: Of those, rows whose primary key the live table has (left alone).
    already_present: int
    #: The missing rows, keyed by column, typed by the model, ordered by primary key.
    rows: list[dict[str, Any]]
    #: The live database's dialect (set up to render SQL text for its own client).
    dialect: Dialect

    @property
    def missing(self) -> int:
        """How many rows the live table lacks."""
        return len(self.rows)

    def document(self) -> dict[str, Any]:
        """The counts as JSON (never the rows themselves)."""
        return {
            "backup": str(self.backup_id),
            "database": self.database,
            "scope": self.scope,
            "table": self.table.name,
            "where": self.where,
            "in_backup": self.in_backup,
            "already_present": self.already_present,
            "missing": self.missing,
        }


# --------------------------------------------------------------------------- finding


def find_missing_rows(
    sessions: sessionmaker[Session],
    box: SecretBox,
    settings: Settings,
    storage: Storage,
    backup_ref: str | uuid.UUID,
    table_name: str,
    *,
    where: str | None = None,
    batch_size: int = BATCH,
    on_progress: artifacts.Progress | None = None,
    on_status: Status | None = None,
) -> RowRecovery:
    """Rows of ``table_name`` in the backup whose primary key the live table lacks.

    ``where`` (raw SQL, in the backup engine's dialect) filters the backup copy only; it runs
    in a read-only transaction on the scratch database and never reaches the live one.
    Changes nothing anywhere; the scratch database is dropped whatever happens.
    """
    where = check_where(where)
    status = on_status or (lambda _text: None)
    with sessions() as session:
        backup = get_backup(session, backup_ref)
        require_good(backup)
        spec = schema_for(backup.role, settings.tenant_schema)
        table = recoverable_table(spec, table_name)
        target = live_target(session, box, settings, backup)
        server = scratch_server(session, box, settings, backup)
    if backend_of(server) != backup.engine:
        raise Conflict(
            f"backup {backup.id} is a {backup.engine} dump, but {target.scope}'s database is "
            f"on {backend_of(server)} now: there is no server to restore a scratch copy on.",
            "Restore the backup with `tenantry restore --target URL` into a "
            f"{backup.engine} database and compare from there.",
        )
    live = make_engine(target.url, pooled=False)
    try:
        with connect(live) as live_conn:
            check_columns(live_conn, table, f"the live database ({target.scope})")
            live_conn.rollback()
            with scratch_database(server, backup.id, "recover") as scratch:
                status(f"restoring backup {backup.id} into a scratch database")
                restore_artifact(storage, backup, scratch, on_progress)
                status(f"comparing {table.name} with the live database")
                in_backup, present, rows = _compare(
                    scratch, live_conn, table, where, batch_size, backup.engine
                )
            dialect = render_dialect(live_conn.dialect)
    finally:
        live.dispose()
    return RowRecovery(
        backup_id=backup.id,
        backup_taken_at=backup.started_at,
        scope=target.scope,
        store_id=target.store_id,
        database=mask(target.url),
        table=table,
        where=where,
        in_backup=in_backup,
        already_present=present,
        rows=rows,
        dialect=dialect,
    )


def _compare(
    scratch: URL,
    live: Connection,
    table: Table,
    where: str | None,
    batch_size: int,
    engine_name: str,
) -> tuple[int, int, list[dict[str, Any]]]:
    """Counts and missing rows of ``table``: the backup copy read in batches, each batch's
    keys looked up in the live table with one query."""
    pk = list(table.primary_key.columns)

    def key_of(row: Row[Any]) -> tuple[Any, ...]:
        return tuple(row._mapping[c] for c in pk)

    in_backup = present = 0
    missing: list[dict[str, Any]] = []
    engine = read_only_engine(scratch)
    try:
        with connect(engine) as conn:
            check_columns(conn, table, "the backup")
            for batch in _backup_batches(conn, table, where, batch_size, engine_name):
                in_backup += len(batch)
                keys = [key_of(row) for row in batch]
                found = _present(live, pk, keys)
                live.rollback()  # no snapshot or lock held between batches
                present += sum(1 for k in keys if k in found)
                missing += [
                    {c.key: row._mapping[c] for c in table.columns}
                    for row, key in zip(batch, keys, strict=True)
                    if key not in found
                ]
    finally:
        engine.dispose()
    return in_backup, present, missing


def _present(
    live: Connection, pk: list[Column[Any]], keys: list[tuple[Any, ...]]
) -> set[tuple[Any, ...]]:
    """Which of ``keys`` the live table holds, as the live database compares them."""
    if len(pk) == 1:
        query = select(pk[0]).where(pk[0].in_([k[0] for k in keys]))
    else:
        query = select(*pk).where(tuple_(*pk).in_(keys))
    found = {tuple(r) for r in live.execute(query)}
    exact = found.intersection(keys)
    if len(found) == len(exact):
        return exact
    # The database matched keys Python sees as different (a case- or accent-insensitive
    # collation, trailing spaces on MySQL): ask it about each unmatched key of this batch.
    for key in set(keys) - exact:
        if live.execute(
            select(*pk).where(and_(*(c == v for c, v in zip(pk, key, strict=True))))
        ).first():
            exact.add(key)
    return exact


def _backup_batches(
    conn: Connection, table: Table, where: str | None, batch_size: int, engine_name: str
) -> Iterator[Sequence[Row[Any]]]:
    """The backup copy's rows in primary-key order, ``batch_size`` at a time (streamed)."""
    query = select(table).order_by(*table.primary_key.columns)
    if where is not None:
        query = query.where(literal_column(f"({where})", Boolean))
    try:
        result = conn.execution_options(stream_results=True, yield_per=batch_size).execute(query)
        yield from result.partitions()
    except DBAPIError as exc:
        if where is None:
            raise
        detail = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        raise InvalidInput(
            f"--where {where!r} does not work as a filter on {table.name} in the backup "
            f"({engine_name}): {detail}.",
            "Write one SQL condition on the table's columns, in the backup engine's dialect, "
            "e.g. --where \"created_at < '2026-01-22'\".",
        ) from None


# --------------------------------------------------------------------------- output


def render_dialect(live: Dialect) -> Dialect:
    """A dialect like ``live`` whose compiled text is for a client, not the driver.

    Drivers with ``format`` parameters need ``%`` doubled in the SQL they receive; a file for
    ``psql`` or ``mariadb`` must keep ``%`` as it is. The server's quoting rules (MySQL's
    backslash escapes) are kept.
    """
    factory: Callable[..., Dialect] = type(live)
    dialect = factory(paramstyle="named")
    for attr in ("_backslash_escapes", "server_version_info", "is_mariadb"):
        if hasattr(live, attr):
            setattr(dialect, attr, getattr(live, attr))
    return dialect


def insert_rows(conn: Connection, recovery: RowRecovery, batch_size: int = BATCH) -> None:
    """Insert the missing rows on ``conn`` (the live database, in the caller's transaction:
    all of them or none)."""
    for chunk in _chunks(recovery.rows, batch_size):
        conn.execute(insert(recovery.table), chunk)


def insert_failed(recovery: RowRecovery, scope: str, exc: DBAPIError) -> Conflict:
    """What a failed insert of the missing rows is to a user (the transaction rolled back)."""
    detail = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
    return Conflict(
        f"inserting {len(recovery.rows)} row(s) into {recovery.table.name} of {scope} "
        f"failed: {redact(detail)}. The transaction was rolled back: no row was inserted.",
        "List what is missing now (run again without --apply): a row may have come back "
        "meanwhile, or one may need a parent row recovered first.",
    )


def record_recovered(
    session: Session,
    target: BackupTarget,
    backup: Backup,
    recovery: RowRecovery,
    counters: StoreCounters | None,
    *,
    actor: str,
) -> None:
    """Master after rows were put back, in the caller's transaction: the store's counters
    (recovered products or orders count again) and an audit entry (never row contents)."""
    if counters is not None and target.store_id is not None:
        apply_counters(session, target.store_id, counters)
    audit.record(
        session,
        actor=actor,
        action="backup.rows_recovered",
        target_type="database",
        target_id=target.scope,
        store_id=backup.store_id,
        details={
            "backup": str(backup.id),
            "table": recovery.table.name,
            "count": len(recovery.rows),
            "filtered": recovery.where is not None,
        },
    )


def _chunks(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    """``rows`` in lists of at most ``size``."""
    it = iter(rows)
    while chunk := list(islice(it, max(1, size))):
        yield chunk
