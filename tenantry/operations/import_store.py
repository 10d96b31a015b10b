"""Importing one store's rows out of a shared database: the ``import`` operation.

Per store, one operation in master (kind ``import``): the store's tenant database is prepared
(its seeded defaults removed from the tables the import fills, which must otherwise be empty),
its rows are copied table by table in foreign-key order, each batch in key order, then verified
(row count and checksum per table against the mapped source rows, foreign keys inside the
tenant database), and the store is marked imported (the operation succeeds, an audit entry).

The copy (:mod:`.import_copy`) and the verification (:mod:`.import_verify`) have modules of
their own, and so has the import cursor (:mod:`tenantry.imports.cursor`).

Resumable: each batch is committed together with the import cursor
(``tenantry_import_cursor`` in the tenant database: the last source key copied per table), so a
process killed at any point leaves a cursor that says exactly which rows are in; the next run
claims the operation once its lease lapsed and reads on after that key: no row skipped, none
twice. A failure (or a cancel) instead rolls the store back: the imported rows deleted, its
seeded defaults put back, the cursor dropped; the database is as it was before.

The source is only read, in one repeatable-read (read-only on PostgreSQL) transaction per
store's copy.

A store's tenant database is worked on through one connection from preparing to finishing,
opened by an engine shared by every store of its server (:data:`SERVERS`): a new engine per
store repeated the driver's set-up queries and compiled every statement again.

PostgreSQL into PostgreSQL, the tables whose mapping SQL can express are copied and verified by
the servers (:mod:`tenantry.imports.pg_copy`: COPY streamed between them in key-range batches,
checksums computed in SQL on both sides); the rest row by row in Python, as across engines.
"""

from __future__ import annotations

import contextlib
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, inspect, select
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from tenantry.crypto import SecretBox
from tenantry.db.engines import writer_sessions
from tenantry.db.master.models import (
    ACTIVE_STATUSES,
    Operation,
    OperationKind,
    ProgressUnit,
)
from tenantry.db.master.models import Store as MasterStore
from tenantry.db.schemas import SchemaSpec
from tenantry.db.server_connections import SERVERS
from tenantry.errors import Conflict, TenantryError
from tenantry.failpoints import failpoint
from tenantry.imports.cursor import CURSOR, begin, read_header
from tenantry.imports.pg_copy import commit_lazily
from tenantry.imports.plan import ImportPlan, StoreTarget
from tenantry.imports.target import determined_rows, tables_with_rows
from tenantry.operations.import_copy import StoreCopy
from tenantry.operations.import_progress import (
    ImportCancelled,
    ImportRun,
    ProgressCallback,
    StoreOutcome,
)
from tenantry.operations.import_verify import StoreVerification
from tenantry.operations.kit import LostClaim, OperationKit
from tenantry.operations.lease_takeover import release_if_holder_died
from tenantry.services import audit
from tenantry.services import stores as store_service
from tenantry.services.connections import migrator_url
from tenantry.services.moves import describe
from tenantry.settings import Settings


@dataclass
class StoreImporter:
    """Imports stores' rows from ``source`` as ``plan`` says, one operation per store."""

    sessions: sessionmaker[Session]
    box: SecretBox
    settings: Settings
    spec: SchemaSpec
    source: Engine
    plan: ImportPlan
    actor: str
    #: Rows per batch (one tenant transaction); None: the path's own default (2,000 row by
    #: row, 50,000 streamed with COPY).
    batch_rows: int | None = None
    on_progress: ProgressCallback | None = None
    kit: OperationKit = field(init=False)
    copier: StoreCopy = field(init=False)
    verifier: StoreVerification = field(init=False)
    #: Master sessions for what only reads: on SQLite a writer transaction queues on
    #: master's one lock and holds it while it reads.
    reads: sessionmaker[Session] = field(init=False)

    def __post_init__(self) -> None:
        self.reads = self.sessions
        self.sessions = writer_sessions(self.sessions)
        self.kit = OperationKit.from_settings(self.reads, self.settings)
        self.copier = StoreCopy(self.source, self.plan, self.batch_rows)
        self.verifier = StoreVerification(self.source, self.plan, self.copier.row_batch)

    # ------------------------------------------------------------------ claiming

    def operation_for(self, target: StoreTarget) -> uuid.UUID:
        """The store's unfinished import operation (to resume), or a new queued one."""
        assert target.store_id is not None
        with self.reads() as session:
            pending = session.scalar(
                select(Operation.id)
                .where(
                    Operation.kind == OperationKind.IMPORT,
                    Operation.store_id == target.store_id,
                    Operation.status.in_(ACTIVE_STATUSES),
                )
                .order_by(Operation.created_at.desc())
                .limit(1)
            )
        if pending is not None:
            return pending
        return self.kit.create(
            OperationKind.IMPORT,
            store_id=target.store_id,
            target=target.slug,
            requested_by=self.actor,
            total=target.total,
            unit=ProgressUnit.ROWS,
            message="importing from a shared database",
        )

    def give_up(self, op_id: uuid.UUID, error: str) -> None:
        """End recorded operation ``op_id`` failed before it started (its store could not be
        provisioned)."""
        if self.kit.claim(op_id) is not None:
            self.kit.fail(op_id, error)

    def _release_if_holder_died(self, op_id: uuid.UUID) -> bool:
        """End the lease of ``op_id`` at once when the process holding it ran on this host
        and is gone (killed): its import is resumed now instead of when its lease lapses."""
        return release_if_holder_died(self.sessions, self.kit.engine, op_id)

    def _claim(self, target: StoreTarget, op_id: uuid.UUID | None) -> tuple[uuid.UUID, bool]:
        """The store's import operation, claimed; whether it ran before (resumed)."""
        op_id = op_id or self.operation_for(target)
        claim = self.kit.claim(op_id)
        if claim is None and self._release_if_holder_died(op_id):
            claim = self.kit.claim(op_id)
        if claim is None:
            raise Conflict(
                f"store {target.slug!r} is being imported by another process (operation {op_id}).",
                "Wait for it (`tenantry ops show ID`), or, if that process died, run the "
                f"import again once its lease lapses ({self.settings.job_lease_seconds:g} s).",
            )
        return op_id, claim.attempts > 1

    # ------------------------------------------------------------------ the run

    def run(self, target: StoreTarget, op_id: uuid.UUID | None = None) -> StoreOutcome:
        """Import (or resume importing) ``target``'s rows, as operation ``op_id`` (or the
        store's own: see :meth:`operation_for`); its outcome. Never raises for a failure of
        this store (the outcome says it), except for Ctrl-C after rolling back."""
        try:
            op_id, resumed = self._claim(target, op_id)
        except TenantryError as exc:
            return StoreOutcome(target.slug, "failed", error=describe(exc))
        outcome = StoreOutcome(target.slug, "running", op_id, resumed=resumed)
        run = ImportRun(op_id, target, self.kit, self.on_progress)
        url: URL | None = None
        try:
            with self.kit.kept_alive(op_id):  # also through long steps that report nothing
                url = self._target_url(target)
                with SERVERS.connect(url) as conn:
                    self._import(conn, target, run, outcome)
        except LostClaim:
            outcome.status, outcome.error = "failed", "taken over by another process"
        except BaseException as exc:
            outcome.status = "cancelled" if isinstance(exc, ImportCancelled) else "failed"
            outcome.error = describe(exc) + self._roll_back(url, target)
            self._end(op_id, outcome)
            if not isinstance(exc, Exception):
                raise
        outcome.rows, outcome.bytes = run.rows, run.bytes
        return outcome

    def _import(
        self, conn: Connection, target: StoreTarget, run: ImportRun, outcome: StoreOutcome
    ) -> None:
        """Prepare, copy, verify and finish on ``conn``, the store database's connection."""
        outcome.resumed = self._prepare(conn, target) or outcome.resumed
        in_sql = self.copier.run(conn, run, outcome)
        failpoint(f"import.after_copy.{target.slug}")
        run.report("verify")
        self.verifier.run(conn, run, outcome, in_sql)
        self._finish(conn, run, outcome)

    def _target_url(self, target: StoreTarget) -> URL:
        with self.reads() as session:
            store = session.get_one(MasterStore, target.store_id)
            config = store_service.active_connection(session, store)
            if config is None:
                raise Conflict(f"store {target.slug!r} has no active database.")
            return migrator_url(session, self.box, config)

    def _store_doc(self, target: StoreTarget) -> dict[str, Any]:
        """The store as provisioning hands it to the schema's seed."""
        with self.reads() as session:
            store = session.get_one(MasterStore, target.store_id)
            return {"name": store.name, "slug": store.slug, "id": str(store.id)}

    def _end(self, op_id: uuid.UUID, outcome: StoreOutcome) -> None:
        try:
            if outcome.status == "cancelled":
                self.kit.mark_cancelled(op_id, message=outcome.error or "cancelled")
            else:
                self.kit.fail(op_id, outcome.error or "failed")
        except LostClaim:
            pass

    # ------------------------------------------------------------------ prepare

    def _seeded_rows(self, store: dict[str, Any]) -> dict[str, Counter[tuple[Any, ...]]]:
        """What the schema's seed puts in each table of a new database of ``store``, worked
        out in a scratch in-memory SQLite database: per table, its rows over the columns
        the seed determines (not ids or times, which the models generate)."""
        seeded: dict[str, Counter[tuple[Any, ...]]] = {}
        if self.spec.seed is None:
            return seeded
        scratch = create_engine("sqlite://")
        try:
            with scratch.begin() as conn:
                self.spec.metadata.create_all(conn)
                self.spec.seed(conn, store)
                for table in self.spec.metadata.sorted_tables:
                    rows = determined_rows(conn, table)
                    if rows:
                        seeded[table.name] = rows
        finally:
            scratch.dispose()
        return seeded

    def _prepare(self, conn: Connection, target: StoreTarget) -> bool:
        """Make the tenant database ready; True when an unfinished import is resumed."""
        fingerprint = self.plan.mapping.fingerprint()
        with conn.begin():
            if conn.dialect.name == "postgresql":
                # Nothing is copied yet: a server crash losing this transaction leaves the
                # database as it was (the copy's batches are flushed before verifying).
                commit_lazily(conn)
            # The cursor table with its header (PostgreSQL and SQLite: in one transaction).
            CURSOR.create(conn, checkfirst=True)
            header = read_header(conn)
            if header is not None:
                if header["fingerprint"] != fingerprint:
                    raise Conflict(
                        f"store {target.slug!r} has an unfinished import made with another "
                        "mapping.",
                        "Run it again with the mapping it began with.",
                    )
                return True
            seeds: dict[str, Counter[tuple[Any, ...]]] | None = None  # worked out if needed
            tables = [st.target for st in self.plan.tables.values()]
            filled = tables_with_rows(conn, tables)  # one query for all (mostly none)
            for table in reversed(tables):
                if table.name not in filled:
                    continue
                if seeds is None:
                    seeds = self._seeded_rows(self._store_doc(target))
                if not determined_rows(conn, table) <= seeds.get(table.name, Counter()):
                    raise Conflict(
                        f"store {target.slug!r}'s table {table.name} already holds rows of "
                        "its own; an import fills empty tables only (or ones holding just the "
                        "defaults a new store database is seeded with).",
                        "Import into a new store (--create-stores), or empty the table.",
                    )
                conn.execute(table.delete())  # the schema's defaults: the source's replace them
            begin(conn, fingerprint, seeded=bool(filled))
        return False

    # ------------------------------------------------------------------ finish / roll back

    def _finish(self, conn: Connection, run: ImportRun, outcome: StoreOutcome) -> None:
        failpoint("import.before_finish")
        details = {
            "operation_id": str(run.op_id),
            "rows": run.rows,
            "tables": {n: t.get("verified", 0) for n, t in outcome.tables.items()},
        }

        def audited(master: Connection) -> None:
            # In the progress write's own transaction: one master transaction fewer per store.
            with Session(bind=master) as session:
                audit.record(
                    session,
                    actor=self.actor,
                    action="store.import",
                    target_type="store",
                    target_id=run.target.slug,
                    store_id=run.target.store_id,
                    details=details,
                )
                session.flush()

        run.report("finish", force=True, record=audited)
        self.kit.finish(
            run.op_id, message=f"imported and verified {run.rows} rows ({run.bytes} bytes)"
        )
        outcome.status = "succeeded"
        # Marked imported first: a process dying here leaves only the cursor table behind
        # (dropped by hand if ever), never an import that looks unfinished over its rows. So
        # its drop need not wait for the disk either.
        failpoint("import.finished")
        with contextlib.suppress(Exception):
            if conn.in_transaction():
                conn.rollback()
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    commit_lazily(conn)
                CURSOR.drop(conn, checkfirst=True)

    def _roll_back(self, url: URL | None, target: StoreTarget) -> str:
        """Put the tenant database back as it was (through a connection of its own: the
        import's may be broken); a note for the error when that failed."""
        if url is None:
            return ""
        try:
            with SERVERS.connect(url) as conn:
                if not inspect(conn).has_table(CURSOR.name):
                    return ""
                conn.rollback()
                with conn.begin():
                    header = read_header(conn)
                    # No header: the import never began writing (its checks refused the
                    # database), so nothing in the tables is the import's to delete.
                    for st in reversed(list(self.plan.tables.values()) if header else []):
                        conn.execute(st.target.delete())
                    if header and header.get("seeded") and self.spec.seed is not None:
                        self.spec.seed(conn, self._store_doc(target))
                CURSOR.drop(conn)
                conn.commit()
        except Exception as exc:  # the original error matters more; say what is left
            return f" (putting the store's database back failed too: {describe(exc)})"
        return " The store's database was put back as it was before the import."
