"""Group commit for webhook ingestion, on the event loop.

Concurrent deliveries share one INSERT and one COMMIT (the database's fsync is the cost that
matters); each caller is answered only once its own row is committed. The batch is written
on one dedicated thread and its callers are woken in one pass of the loop.

The thread keeps its connection while deliveries keep coming: on PostgreSQL a batch is then
one round trip (its INSERT, a transaction of its own), where checking a connection out of the
pool for each batch cost a ping, a ``BEGIN`` and a ``COMMIT`` more. On a busy machine every
round trip waits for the database's process to be scheduled, so those were most of a batch's
time. A connection idle for :data:`HOLD_IDLE_S` goes back to the pool, whose ping then checks
the next one; a batch that fails drops it too.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import Connection, Engine

from tenantry.db.engines import writer
from tenantry.services.billing.webhook_intake import Delivery, Ingested, store_deliveries

#: Deliveries per INSERT; more wait for the next one.
BATCH = 256
#: The writer thread's connection goes back to the pool after this long unused.
HOLD_IDLE_S = 5.0


class IngestWriter:
    """Stores verified deliveries for one process's event loop."""

    def __init__(self, engine: Engine) -> None:
        self._engine = writer(engine)
        self._pending: list[tuple[Delivery, asyncio.Future[Ingested]]] = []
        self._draining: asyncio.Task[None] | None = None
        # One thread: batches are written one after another, in the order they formed.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="tenantry-ingest")
        # Used by that thread only (and by close, once it has stopped).
        self._conn: Connection | None = None
        self._last_used = 0.0

    async def store(self, delivery: Delivery) -> Ingested:
        """Store ``delivery``; returns once it is committed (or raises what the commit did)."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Ingested] = loop.create_future()
        self._pending.append((delivery, answer))
        if self._draining is None:
            self._draining = loop.create_task(self._drain())
        return await answer

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch, self._pending = self._pending[:BATCH], self._pending[BATCH:]
                try:
                    results = await loop.run_in_executor(
                        self._thread, self._write, [d for d, _ in batch]
                    )
                except Exception as exc:  # nothing committed: each caller gets the error (5xx)
                    for _, answer in batch:
                        if not answer.done():
                            answer.set_exception(exc)
                    continue
                for (_, answer), result in zip(batch, results, strict=True):
                    if not answer.done():  # a caller that went away is not answered
                        answer.set_result(result)
        finally:
            self._draining = None

    def _write(self, deliveries: list[Delivery]) -> list[Ingested]:
        conn = self._connection()
        try:
            stored = store_deliveries(conn, deliveries)
            conn.commit()  # before any caller is answered (on PostgreSQL, nothing left to do)
        except BaseException:
            self._release()  # the next batch starts from the pool, pinged
            raise
        self._last_used = time.monotonic()
        return stored

    def _connection(self) -> Connection:
        """The writer thread's connection: the one it holds, unless idle too long."""
        if self._conn is not None and time.monotonic() - self._last_used > HOLD_IDLE_S:
            self._release()
        if self._conn is None:
            conn = self._engine.connect()
            if conn.dialect.name == "postgresql":
                # Each batch is one statement: its own transaction, committed when it returns.
                conn.execution_options(isolation_level="AUTOCOMMIT")
            self._conn = conn
        return self._conn

    def _release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Wait for the batch being written, stop the thread, give its connection back."""
        self._thread.shutdown(wait=True)
        self._release()
