"""Group commit for webhook ingestion, on the event loop.

Concurrent deliveries share one INSERT and one COMMIT (the database's fsync is the cost that
matters); each caller is answered only once its own row is committed. Each batch is written
on a writer thread of its own and its callers are woken in one pass of the loop.

On a server database two batches are written at once (:data:`SERVER_WRITERS`): while one
waits for its commit's fsync, the next is inserted, and the server flushes both commits'
WAL with one fsync where they meet. With a single batch in flight, a delivery arriving
during a commit waited for that fsync, then its own. SQLite has one writer at a time, so
there it is one thread. Concurrent batches need no order between them: a duplicate in
both is stored once (the unique key; the second insert waits for the first's commit), and
the worker claims by status, not by position.

Each thread keeps its connection while deliveries keep coming: on PostgreSQL a batch is then
one round trip (its INSERT, a transaction of its own), where checking a connection out of the
pool for each batch cost a ping, a ``BEGIN`` and a ``COMMIT`` more. On a busy machine every
round trip waits for the database's process to be scheduled, so those were most of a batch's
time. A connection idle for :data:`HOLD_IDLE_S` goes back to the pool, whose ping then checks
the next one; a batch that fails drops it too.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import Connection, Engine

from tenantry.db.engines import writer
from tenantry.services.billing.webhook_intake import Delivery, Ingested, store_deliveries

#: Deliveries per INSERT; more wait for the next one.
BATCH = 256
#: Batches written at once on PostgreSQL and MySQL/MariaDB (SQLite: one).
SERVER_WRITERS = 2
#: A writer thread's connection goes back to the pool after this long unused.
HOLD_IDLE_S = 5.0


class _Held:
    """One writer thread's connection and when it last wrote."""

    def __init__(self) -> None:
        self.conn: Connection | None = None
        self.last_used = 0.0


class IngestWriter:
    """Stores verified deliveries for one process's event loop."""

    def __init__(self, engine: Engine) -> None:
        self._engine = writer(engine)
        self._writers = 1 if engine.dialect.name == "sqlite" else SERVER_WRITERS
        self._pending: list[tuple[Delivery, asyncio.Future[Ingested]]] = []
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._thread = ThreadPoolExecutor(self._writers, thread_name_prefix="tenantry-ingest")
        self._local = threading.local()
        self._held: list[_Held] = []  # every thread's, for close
        self._held_lock = threading.Lock()

    async def store(self, delivery: Delivery) -> Ingested:
        """Store ``delivery``; returns once it is committed (or raises what the commit did)."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Ingested] = loop.create_future()
        self._pending.append((delivery, answer))
        self._start_batches(loop)
        return await answer

    def _start_batches(self, loop: asyncio.AbstractEventLoop) -> None:
        """Put each free writer to work on what is pending."""
        while self._in_flight < min(self._writers, len(self._pending)):
            self._in_flight += 1
            task = loop.create_task(self._write_batch(loop))
            self._tasks.add(task)  # held until done: the loop keeps only weak references
            task.add_done_callback(self._tasks.discard)

    async def _write_batch(self, loop: asyncio.AbstractEventLoop) -> None:
        # The batch is taken when the task first runs, not when it was started: deliveries
        # that reached the loop in the same pass join it.
        batch, self._pending = self._pending[:BATCH], self._pending[BATCH:]
        try:
            if batch:
                await self._write_and_answer(loop, batch)
        finally:
            self._in_flight -= 1
            self._start_batches(loop)  # what arrived meanwhile

    async def _write_and_answer(
        self,
        loop: asyncio.AbstractEventLoop,
        batch: list[tuple[Delivery, asyncio.Future[Ingested]]],
    ) -> None:
        try:
            results = await loop.run_in_executor(self._thread, self._write, [d for d, _ in batch])
        except Exception as exc:  # nothing committed: each caller gets the error (5xx)
            for _, answer in batch:
                if not answer.done():
                    answer.set_exception(exc)
            return
        for (_, answer), result in zip(batch, results, strict=True):
            if not answer.done():  # a caller that went away is not answered
                answer.set_result(result)

    def _write(self, deliveries: list[Delivery]) -> list[Ingested]:
        held = self._mine()
        conn = self._connection(held)
        try:
            stored = store_deliveries(conn, deliveries)
            conn.commit()  # before any caller is answered (on PostgreSQL, nothing left to do)
        except BaseException:
            self._release(held)  # the next batch starts from the pool, pinged
            raise
        held.last_used = time.monotonic()
        return stored

    def _mine(self) -> _Held:
        """This writer thread's connection slot."""
        held: _Held | None = getattr(self._local, "held", None)
        if held is None:
            held = self._local.held = _Held()
            with self._held_lock:
                self._held.append(held)
        return held

    def _connection(self, held: _Held) -> Connection:
        """The thread's connection: the one it holds, unless idle too long."""
        if held.conn is not None and time.monotonic() - held.last_used > HOLD_IDLE_S:
            self._release(held)
        if held.conn is None:
            conn = self._engine.connect()
            if conn.dialect.name == "postgresql":
                # Each batch is one statement: its own transaction, committed when it returns.
                conn.execution_options(isolation_level="AUTOCOMMIT")
            held.conn = conn
        return held.conn

    @staticmethod
    def _release(held: _Held) -> None:
        conn, held.conn = held.conn, None
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Wait for the batches being written, stop the threads, give their connections back."""
        self._thread.shutdown(wait=True)
        with self._held_lock:
            for held in self._held:
                self._release(held)
