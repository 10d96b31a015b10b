"""Group commit for webhook ingestion, on the event loop.

Concurrent deliveries share one INSERT and one COMMIT (the database's fsync is the cost that
matters); each caller is answered only once its own row is committed. The batch is written
on one dedicated thread and its callers are woken in one pass of the loop.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import Engine

from tenantry.db.engines import writer
from tenantry.services.billing.webhook_intake import Delivery, Ingested, store_deliveries

#: Deliveries per INSERT; more wait for the next one.
BATCH = 256


class IngestWriter:
    """Stores verified deliveries for one process's event loop."""

    def __init__(self, engine: Engine) -> None:
        self._engine = writer(engine)
        self._pending: list[tuple[Delivery, asyncio.Future[Ingested]]] = []
        self._draining: asyncio.Task[None] | None = None
        # One thread: batches are written one after another, in the order they formed.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="tenantry-ingest")

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
        with self._engine.begin() as conn:  # committed before any caller is answered
            return store_deliveries(conn, deliveries)

    def close(self) -> None:
        """Wait for the batch being written, then stop the thread."""
        self._thread.shutdown(wait=True)
