"""Handing durable work to whatever runs it: the :class:`Dispatcher` protocol.

Adapters record work in master first (a provisioning job, a fleet run, a queued backup), then
hand its id to a dispatcher. :func:`tenantry.runtime.open_dispatcher` gives the configured one
(the job queue in ``tenantry.jobs``); :class:`InProcessDispatcher` runs the same steps right
here, for ``--inline`` and for an API without workers (tests, demos).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from typing import Protocol

from tenantry.errors import ConfigurationError
from tenantry.operations import work
from tenantry.runtime import Platform
from tenantry.settings import Settings

log = logging.getLogger("tenantry.jobs")

#: Called once a worker is ready, with the number of unfinished jobs it re-enqueued.
OnReady = Callable[[int], None]


class Dispatcher(Protocol):
    """What adapters need to hand durable work over, and ``tenantry worker`` to run it."""

    @property
    def where(self) -> str:
        """Where the work goes, as shown in messages (never a URL's credentials)."""
        ...

    def enqueue_provision(self, job_id: uuid.UUID) -> None:
        """Run (or resume) provisioning job ``job_id``."""
        ...

    def enqueue_fleet_tenants(self, run_id: uuid.UUID, store_ids: list[uuid.UUID]) -> None:
        """Migrate each tenant ``store_ids`` of queued fleet run ``run_id``."""
        ...

    def enqueue_backup(self, backup_id: uuid.UUID, scope: str) -> None:
        """Take queued backup ``backup_id`` of ``scope``."""
        ...

    def enqueue_import(self, operation_id: uuid.UUID) -> None:
        """Run (or resume) queued store import ``operation_id`` (``import shared --queue``)."""
        ...

    def enqueue_drain(self, operation_id: uuid.UUID, concurrency: int) -> None:
        """Run (or resume) server drain ``operation_id``, ``concurrency`` moves at a time."""
        ...

    def enqueue_rebalance(self, operation_id: uuid.UUID, concurrency: int) -> None:
        """Run (or resume) rebalance ``operation_id``, ``concurrency`` moves at a time."""
        ...

    def depth(self) -> int:
        """Messages waiting to be run: a cheap call that also proves the queue answers
        (raises :class:`~tenantry.errors.QueueUnreachable` when it does not)."""
        ...

    def run_workers(self, threads: int, *, on_ready: OnReady | None = None) -> None:
        """Run the work handed to this dispatcher until stopped (``tenantry worker``)."""
        ...

    def close(self) -> None:
        """Release what the dispatcher holds (connections, threads)."""
        ...


class InProcessDispatcher:
    """Runs each piece of work in this process the moment it is handed over.

    The work takes the same steps as in a worker (:mod:`tenantry.operations.work`) and
    records the same progress in master. By default the caller waits for it and a failure
    is logged, as a worker would (the record in master says what happened); with
    ``background=True`` it runs in a thread while the caller follows the record, and
    :meth:`raise_failure` hands over an error that escaped the work.
    """

    def __init__(
        self, source: Settings | Platform, *, background: bool = False, name: str = "inline:"
    ) -> None:
        """``source``: a platform to borrow, or settings to open one from on first use (and
        close with the dispatcher). ``name`` prefixes the runner's name in job leases."""
        self._borrowed = source if isinstance(source, Platform) else None
        self._settings = source.settings if isinstance(source, Platform) else source
        self._platform = self._borrowed
        self._lock = threading.Lock()
        self._background = background
        self._name = name
        self._threads: list[threading.Thread] = []
        self._failures: list[BaseException] = []

    @property
    def where(self) -> str:
        """Where the work goes, as shown in messages."""
        return "this process"

    def platform(self) -> Platform:
        """The platform the work runs on."""
        with self._lock:
            if self._platform is None:
                self._platform = Platform.open(self._settings)
            return self._platform

    def enqueue_provision(self, job_id: uuid.UUID) -> None:
        """Run (or resume) provisioning job ``job_id`` here."""
        self._run(
            f"provision-{job_id}",
            # A name of its own per job, as a worker's: leases never mix up two jobs' runners.
            lambda: work.run_provision(
                self.platform(), job_id, worker=work.worker_name(self._name)
            ),
        )

    def enqueue_fleet_tenants(self, run_id: uuid.UUID, store_ids: list[uuid.UUID]) -> None:
        """Migrate the tenants of queued fleet run ``run_id`` here, one after another."""

        def migrate_each() -> None:
            for store_id in store_ids:
                work.run_fleet_tenant(self.platform(), run_id, store_id)

        self._run(f"fleet-{run_id}", migrate_each)

    def enqueue_backup(self, backup_id: uuid.UUID, scope: str) -> None:
        """Take queued backup ``backup_id`` of ``scope`` here."""
        self._run(f"backup-{backup_id}", lambda: work.run_backup(self.platform(), backup_id, scope))

    def enqueue_import(self, operation_id: uuid.UUID) -> None:
        """Run (or resume) queued store import ``operation_id`` here."""
        self._run(f"import-{operation_id}", lambda: work.run_import(self.platform(), operation_id))

    def enqueue_drain(self, operation_id: uuid.UUID, concurrency: int) -> None:
        """Run (or resume) server drain ``operation_id`` here."""
        self._run(
            f"drain-{operation_id}",
            lambda: work.run_drain(self.platform(), operation_id, concurrency),
        )

    def enqueue_rebalance(self, operation_id: uuid.UUID, concurrency: int) -> None:
        """Run (or resume) rebalance ``operation_id`` here."""
        self._run(
            f"rebalance-{operation_id}",
            lambda: work.run_rebalance(self.platform(), operation_id, concurrency),
        )

    def depth(self) -> int:
        """Nothing ever waits here: work runs as it is handed over."""
        return 0

    def run_workers(self, threads: int, *, on_ready: OnReady | None = None) -> None:
        """Refused: work handed to this dispatcher has already run; there is nothing to serve."""
        raise ConfigurationError(
            "the in-process dispatcher runs work as it is handed over; it has no queue to serve.",
            "Run `tenantry worker` with the configured queue (TENANTRY_QUEUE_URL).",
        )

    def _run(self, name: str, body: Callable[[], object]) -> None:
        if not self._background:
            try:
                body()
            except Exception:  # as in a worker: logged; the record in master tells the rest
                log.exception("%s failed", name)
            return

        def guarded() -> None:
            try:
                body()
            except BaseException as exc:  # handed to the thread that follows the work
                self._failures.append(exc)

        thread = threading.Thread(target=guarded, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def raise_failure(self) -> None:
        """Raise the first error that escaped background work, if any."""
        if self._failures:
            raise self._failures[0]

    def join(self) -> None:
        """Wait for the background work handed over so far."""
        for thread in self._threads:
            thread.join()

    def close(self) -> None:
        """Wait for background work, then close the platform if this dispatcher opened it."""
        self.join()
        with self._lock:
            if self._platform is not None and self._borrowed is None:
                self._platform.close()
            self._platform = self._borrowed
