"""The Huey queue: SQLite storage in the data dir by default, Redis for many machines.

:class:`Queue` is the platform's :class:`~tenantry.operations.dispatch.Dispatcher`; the only
code that imports Huey. Tasks are thin: they build (once per worker process) the
:class:`~tenantry.runtime.Platform` and call :mod:`tenantry.operations.work`. Anything
durable lives in master, not in the queue: a lost queue message only delays a job, because
workers re-enqueue jobs whose lease expired (on start and every minute).
"""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from huey import Huey, RedisHuey, SqliteHuey, crontab

from tenantry.db.master.models import OperationKind
from tenantry.errors import QueueUnreachable
from tenantry.files import private_file
from tenantry.jobs.heartbeat import Heartbeat
from tenantry.jobs.sweep_timer import SCHEDULED_PERIOD_S, SweepTimer
from tenantry.operations import process_webhooks, sweep, work
from tenantry.operations.dispatch import OnReady
from tenantry.operations.kit import OperationKit
from tenantry.operations.lease_takeover import release_dead_holders_here
from tenantry.operations.move_batch import recorded_concurrency
from tenantry.operations.provision import Provisioner
from tenantry.runtime import Platform
from tenantry.services.provisioning import QUEUED_GRACE_S
from tenantry.settings import Settings

log = logging.getLogger("tenantry.jobs")
FLEET_RETRIES = 5
FLEET_RETRY_DELAY_S = 2
#: The worker runs `tenantry doctor`'s checks this often (minutes) and logs what fails.
DOCTOR_EVERY_MIN = 5


class Queue:
    """A Huey instance for ``settings`` with tenantry's tasks registered on it: the
    :class:`~tenantry.operations.dispatch.Dispatcher` that ``tenantry worker`` serves."""

    def __init__(self, settings: Settings, *, immediate: bool = False) -> None:
        self.settings = settings
        if settings.queue_url:
            self.huey: Huey = RedisHuey(
                settings.queue_name, url=settings.queue_url, immediate=immediate
            )
        else:
            filename = settings.data_dir / "queue.db"
            private_file(filename)  # Huey's sqlite3 would create it with the umask's mode
            self.huey = SqliteHuey(settings.queue_name, filename=str(filename), immediate=immediate)
        self._platform: Platform | None = None
        self._lock = threading.Lock()
        self._provision = self.huey.task(name="tenantry.provision")(self._run_provision)
        # A master hiccup must not leave a queued run waiting forever for one tenant.
        self._fleet_tenant = self.huey.task(
            name="tenantry.fleet_tenant", retries=FLEET_RETRIES, retry_delay=FLEET_RETRY_DELAY_S
        )(self._run_fleet_tenant)
        if settings.recovery_sweep_seconds == SCHEDULED_PERIOD_S:
            self.huey.periodic_task(crontab(minute="*"), name="tenantry.recover")(self.recover)
        self._backup = self.huey.task(name="tenantry.backup")(self._run_backup)
        self._import = self.huey.task(name="tenantry.import")(self._run_import)
        self._drain = self.huey.task(name="tenantry.drain")(self._run_drain)
        self._rebalance = self.huey.task(name="tenantry.rebalance")(self._run_rebalance)
        self.huey.periodic_task(crontab(minute=f"*/{DOCTOR_EVERY_MIN}"), name="tenantry.doctor")(
            self.doctor_tick
        )
        self.huey.periodic_task(crontab(minute="*"), name="tenantry.spares")(self.spare_tick)
        if settings.backup_scheduler:
            self.huey.periodic_task(crontab(minute="*"), name="tenantry.backup_schedule")(
                self.backup_tick
            )

    def platform(self) -> Platform:
        """The worker process's platform, opened on first use."""
        with self._lock:
            if self._platform is None:
                self._platform = Platform.open(self.settings)
            return self._platform

    def close(self) -> None:
        """Release the platform's engines."""
        with self._lock:
            if self._platform is not None:
                self._platform.close()
                self._platform = None

    def _enqueue(self, task: Any, *args: str) -> None:
        """Put one message on the queue; an unreachable queue is a clear error, not a crash.

        The work itself is recorded in master before it is enqueued, so nothing is lost: the
        workers' recovery sweep enqueues it again once the queue is back.
        """
        if self.huey.immediate:  # tests: the task runs right here and reports for itself
            task(*args)
            return
        try:
            task(*args)
        except Exception as exc:  # the storage's own errors (Redis, SQLite) vary by backend
            raise QueueUnreachable(
                f"the job queue ({self.where}) cannot be reached ({type(exc).__name__}); the "
                "work is recorded and is queued again when a worker runs and the queue is back.",
                "Check TENANTRY_QUEUE_URL and that the queue is running, or run the work in "
                "this process (--inline where a command offers it).",
            ) from None

    @property
    def where(self) -> str:
        """The queue as shown in messages: never its URL's credentials."""
        if not self.settings.queue_url:
            return "the embedded queue in the data dir"
        parts = urlsplit(self.settings.queue_url)
        try:
            port = f":{parts.port}" if parts.port else ""
        except ValueError:
            port = ""
        return f"Redis at {parts.hostname or '?'}{port}"

    def depth(self) -> int:
        """Messages waiting in the queue (Huey's pending count); the queue not answering is
        :class:`QueueUnreachable`, naming where it is (never its URL's credentials)."""
        try:
            return int(self.huey.pending_count())
        except Exception as exc:  # the storage's own errors (Redis, SQLite) vary by backend
            raise QueueUnreachable(
                f"the job queue ({self.where}) does not answer ({type(exc).__name__}).",
                "Check TENANTRY_QUEUE_URL and that the queue (Redis) is running.",
            ) from None

    def enqueue_provision(self, job_id: uuid.UUID) -> None:
        """Ask a worker to run (or resume) provisioning job ``job_id``."""
        self._enqueue(self._provision, str(job_id))

    def _provisioner(self) -> Provisioner:
        return work.provisioner(self.platform(), work.worker_name())

    def _run_provision(self, job_id: str) -> str:
        outcome = work.run_provision(self.platform(), uuid.UUID(job_id))
        if not self.huey.immediate and self.settings.spare_databases:
            # The spare it may have claimed is replaced now, off any request's path (an
            # immediate queue runs tasks inside the request: the minute's tick does it then).
            try:
                work.spare_tick_after_job(self.platform())
            except Exception:  # the job's outcome stands; the next tick tries again
                log.exception("refilling the spare databases after job %s failed", job_id)
        return outcome

    def enqueue_fleet_tenants(self, run_id: uuid.UUID, store_ids: list[uuid.UUID]) -> None:
        """One job per tenant database of queued fleet run ``run_id``."""
        for store_id in store_ids:
            self._enqueue(self._fleet_tenant, str(run_id), str(store_id))

    def _run_fleet_tenant(self, run_id: str, store_id: str) -> str:
        return work.run_fleet_tenant(self.platform(), uuid.UUID(run_id), uuid.UUID(store_id))

    def enqueue_backup(self, backup_id: uuid.UUID, scope: str) -> None:
        """Ask a worker to take queued backup ``backup_id`` of ``scope``."""
        self._enqueue(self._backup, str(backup_id), scope)

    def _run_backup(self, backup_id: str, scope: str) -> str:
        return work.run_backup(self.platform(), uuid.UUID(backup_id), scope)

    def enqueue_import(self, operation_id: uuid.UUID) -> None:
        """Ask a worker to run (or resume) queued store import ``operation_id``."""
        self._enqueue(self._import, str(operation_id))

    def _run_import(self, operation_id: str) -> str:
        return work.run_import(self.platform(), uuid.UUID(operation_id))

    def enqueue_drain(self, operation_id: uuid.UUID, concurrency: int) -> None:
        """Ask a worker to run (or resume) server drain ``operation_id``."""
        self._enqueue(self._drain, str(operation_id), str(concurrency))

    def _run_drain(self, operation_id: str, concurrency: str) -> str:
        return work.run_drain(self.platform(), uuid.UUID(operation_id), int(concurrency))

    def enqueue_rebalance(self, operation_id: uuid.UUID, concurrency: int) -> None:
        """Ask a worker to run (or resume) rebalance ``operation_id``."""
        self._enqueue(self._rebalance, str(operation_id), str(concurrency))

    def _run_rebalance(self, operation_id: str, concurrency: str) -> str:
        return work.run_rebalance(self.platform(), uuid.UUID(operation_id), int(concurrency))

    def backup_tick(self) -> None:
        """Run the backups, restore tests and pruning that are due (every minute)."""
        work.backup_tick(self.platform())

    def spare_tick(self) -> None:
        """Refill the spare database pools (every minute, and after each provisioning job)."""
        work.spare_tick(self.platform())

    def doctor_tick(self) -> None:
        """Run the doctor's checks and log the failing ones (every few minutes)."""
        work.doctor_tick(self.platform(), queue_depth=self.depth)

    def recover(self) -> int:
        """Re-enqueue the operations no live worker runs (its worker died, or its queue
        message was lost): the kit's stalled operations (provisioning jobs, fleet runs), and
        queued backups waiting too long; end those of kinds run by a command whose process died,
        rolling back a dead mover's move, restore or row recovery
        (:mod:`~tenantry.operations.sweep`). Work whose process ran on this host and is gone
        is handled at once, without waiting for its lease to lapse (a worker restarted after a
        kill resumes its jobs as it starts).
        A backup or restore test whose process died cannot be resumed (a dump is one stream):
        it is cleaned up and failed, to be run again; the scratch databases of dead restore
        tests, restores and row recoveries are dropped. Returns how many operations it
        handled."""
        platform = self.platform()
        kit = OperationKit.from_settings(platform.sessions, platform.settings)
        released = release_dead_holders_here(kit.engine)
        if released:
            log.info("ended %d lease(s) and lock(s) of processes of this host that died", released)
        ended = sweep.end_abandoned(kit)
        rolled_back = sweep.roll_back_abandoned(platform)
        stalled = kit.find_stalled(
            kinds=(OperationKind.PROVISION,), queued_for=timedelta(seconds=QUEUED_GRACE_S)
        )
        runs = kit.find_stalled(kinds=(OperationKind.FLEET_RUN,))
        backups, backups_ended = work.recover_backups(platform)
        # After the dead restore tests, restores and recoveries were ended above (a stalled
        # one no longer uses its backup either way; its record says why first).
        sweep.drop_abandoned_scratch(platform)
        imports = work.stalled_queued_imports(
            platform, kit, queued_for=timedelta(seconds=QUEUED_GRACE_S)
        )
        # A drain or rebalance whose runner died (a worker, or a command) is resumed by a
        # worker, as many moves at once as it was asked.
        drains = kit.find_stalled(
            kinds=(OperationKind.DRAIN, OperationKind.REBALANCE),
            queued_for=timedelta(seconds=QUEUED_GRACE_S),
        )
        # A stalled job that was cancelled is claimed to drop what it made, then ends.
        for operation in stalled:
            self.enqueue_provision(operation.id)
        # A queued fleet run is resumed (its tenants without an outcome enqueued again); one
        # whose own process died is marked abandoned, saying to run it again.
        for run in runs:
            self.enqueue_fleet_tenants(run.id, work.recover_fleet_run(platform, run.id))
        for backup_id, scope in backups:
            self.enqueue_backup(backup_id, scope)
        for operation_id in imports:
            self.enqueue_import(operation_id)
        for drain in drains:
            concurrency = recorded_concurrency(kit.get(drain.id))
            if drain.kind == OperationKind.REBALANCE:
                self.enqueue_rebalance(drain.id, concurrency)
            else:
                self.enqueue_drain(drain.id, concurrency)
        if stalled or runs or backups or imports or drains:
            log.info(
                "re-enqueued %d provisioning job(s), %d backup(s), %d store import(s), "
                "%d drain(s) or rebalance(s); recovered %d fleet run(s)",
                len(stalled),
                len(backups),
                len(imports),
                len(drains),
                len(runs),
            )
        return (
            len(stalled)
            + len(imports)
            + len(drains)
            + len(runs)
            + len(backups)
            + len(ended)
            + len(backups_ended)
            + len(rolled_back)
        )

    def start_heartbeat(self) -> Heartbeat:
        """Report this worker to master every few seconds, so that commands waiting for a
        queued job can tell when no worker runs."""
        heartbeat = Heartbeat(self.platform().writer_sessions)
        heartbeat.start()
        return heartbeat

    def start_webhook_loop(self) -> tuple[threading.Thread, threading.Event]:
        """Process billing webhook events in a background thread until the event is set."""
        stop = threading.Event()
        thread = threading.Thread(
            target=process_webhooks.run_forever,
            args=(self.platform().billing_sessions, stop),
            name="tenantry-webhooks",
            daemon=True,
        )
        thread.start()
        return thread, stop

    def consumer(self, workers: int = 2) -> Any:
        """A Huey consumer running ``workers`` threads; call ``.run()`` in the main thread."""
        # Huey backs off to max_delay between polls of an idle SQLite queue; one second keeps
        # a new job's pick-up prompt (Redis blocks on the list and needs no polling).
        return self.huey.create_consumer(
            workers=workers, worker_type="thread", periodic=True, max_delay=1.0
        )

    def run_workers(self, threads: int, *, on_ready: OnReady | None = None) -> None:
        """Serve the queue with ``threads`` worker threads until stopped (Ctrl-C waits for
        running jobs): first re-enqueue unfinished work, then report to master, apply stored
        webhook events and run jobs. The recovery sweep runs each minute on the queue's
        schedule, or every ``TENANTRY_RECOVERY_SWEEP_SECONDS`` on a timer of its own."""
        recovered = self.recover()  # opens the platform: master is checked first
        heartbeat = self.start_heartbeat()
        if on_ready is not None:
            on_ready(recovered)
        loop, stop = self.start_webhook_loop()
        timer: SweepTimer | None = None
        if self.settings.recovery_sweep_seconds != SCHEDULED_PERIOD_S:
            timer = SweepTimer(self.recover, self.settings.recovery_sweep_seconds)
            timer.start()
        try:
            self.consumer(threads).run()
        finally:
            if timer is not None:
                timer.stop()
            stop.set()
            loop.join(timeout=10)
            heartbeat.stop()
