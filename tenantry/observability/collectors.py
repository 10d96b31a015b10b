"""The metrics read at scrape time: one collector over master, billing and the queue.

Whichever process did the work, these numbers come from where it is recorded, so every
process that exports them (each API process, a worker with ``--metrics-port``) says the same.
A scrape stays bounded however many tenants there are: aggregate queries only, no tenant
database is opened, and per-tenant sizes are the top N
(``TENANTRY_METRICS_TOP_TENANTS``, default 20). Each family is read on its own: one that
fails is skipped (logged at WARNING, counted in ``tenantry_collector_errors_total``) and the
others are still exported.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tenantry.db.engines import sqlite_path
from tenantry.db.master.models import OperationKind
from tenantry.db.sizes import database_bytes
from tenantry.services import fleet_status, operation_counts, tenant_sizes, workers
from tenantry.services.backups import freshness
from tenantry.services.billing import subscriptions, webhook_backlog
from tenantry.version import __version__

if TYPE_CHECKING:
    from tenantry.operations.dispatch import Dispatcher
    from tenantry.runtime import Platform

log = logging.getLogger("tenantry.metrics")

TOP_TENANTS_ENV = "TENANTRY_METRICS_TOP_TENANTS"
DEFAULT_TOP_TENANTS = 20
#: Operation statuses that are ends (counted in ``tenantry_operations_total``); the others
#: are states an operation is in (``tenantry_operations``).
ENDED = ("succeeded", "failed", "cancelled")


def top_tenants() -> int:
    """How many tenants' sizes are exported one by one (1 to 1000)."""
    raw = os.environ.get(TOP_TENANTS_ENV, "").strip()
    if raw.isdigit() and 1 <= int(raw) <= 1000:
        return int(raw)
    if raw:
        log.warning("%s must be 1 to 1000, got %r; using %d", TOP_TENANTS_ENV, raw, 20)
    return DEFAULT_TOP_TENANTS


def gauge(name: str, doc: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    """A gauge family with ``labels`` (values added by the caller)."""
    return GaugeMetricFamily(name, doc, labels=list(labels))


def _missing_files(platform: Platform) -> set[str]:
    """Master and billing when they are SQLite files that are gone: connecting would create
    an empty database in their place, which would then be read as if it were them."""
    found = set()
    for name, engine in (("master", platform.master_engine), ("billing", platform.billing_engine)):
        path = sqlite_path(engine.url)
        if path is not None and not path.is_file():
            found.add(name)
    return found


class PlatformCollector(Collector):
    """Reads the platform's state at each scrape (see the module docstring)."""

    def __init__(
        self,
        platform: Callable[[], Platform],
        dispatcher: Callable[[], Dispatcher | None],
    ) -> None:
        """``platform`` and ``dispatcher`` are called at each scrape (an API opens them at
        start-up, after the collector is made)."""
        self._platform = platform
        self._dispatcher = dispatcher
        self._errors: dict[str, int] = {}
        self._lock = threading.Lock()
        #: Each family's reader, and the database it reads (None: neither master nor billing).
        self._families: dict[str, tuple[str | None, Callable[[Platform], list[Metric]]]] = {
            "operations": ("master", self._operations),
            "queue": (None, self._queue),
            "webhooks": ("billing", self._webhooks),
            "subscriptions": ("billing", self._subscriptions),
            "database_sizes": (None, self._database_sizes),
            "tenants": ("master", self._tenants),
            "disk": (None, self._disk),
            "backups": ("master", self._backups),
            "fleet": ("master", self._fleet),
            "workers": ("master", self._workers),
        }

    def describe(self) -> list[Metric]:
        """Nothing up front: registering must not query the databases."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Every family that could be read now, then the error counts and the info gauge."""
        platform = self._platform()
        missing = _missing_files(platform)
        for name, (database, read) in self._families.items():
            try:
                if database in missing:
                    raise FileNotFoundError(f"the {database} database file is missing")
                found = read(platform)
            except Exception as exc:  # one family's failure must not fail the scrape
                log.warning("metrics: reading %s failed (%s)", name, _why(exc))
                with self._lock:
                    self._errors[name] = self._errors.get(name, 0) + 1
                continue
            yield from found
        errors = CounterMetricFamily(
            "tenantry_collector_errors",
            "Scrape-time reads that failed (that family was left out of the scrape).",
            labels=["collector"],
        )
        with self._lock:
            for name in self._families:
                errors.add_metric([name], self._errors.get(name, 0))
        yield errors
        info = gauge("tenantry_info", "The running tenantry version.", ["version"])
        info.add_metric([__version__], 1)
        yield info

    def read(self, names: Iterable[str]) -> list[Metric]:
        """The families ``names`` only, read now (the console's alert states need a few, not
        a whole scrape); one that fails is left out, as in a scrape."""
        platform = self._platform()
        found: list[Metric] = []
        for name in names:
            try:
                found += self._families[name][1](platform)
            except Exception as exc:  # as in collect(): the others are still read
                log.warning("metrics: reading %s failed (%s)", name, _why(exc))
        return found

    # ------------------------------------------------------------------ families

    def _operations(self, platform: Platform) -> list[Metric]:
        with platform.sessions() as session:
            counts = operation_counts.operation_counts(session)
        ended = CounterMetricFamily(
            "tenantry_operations",
            "Operations ended, by kind and outcome (from master).",
            labels=["kind", "status"],
        )
        current = gauge(
            "tenantry_operations", "Operations not ended, by kind and state.", ["kind", "status"]
        )
        # Every kind's outcomes exist from the start (at 0): the first failure of a kind is
        # then an increase that rate() and increase() see, not a new series.
        for each in OperationKind:
            for status in ENDED:
                counts.setdefault((each.value, status), 0)
        started = CounterMetricFamily(
            "tenantry_operations_started",
            "Operations recorded, whatever became of them, by kind (from master).",
            labels=["kind"],
        )
        per_kind: dict[str, int] = {}
        for (kind, status), n in sorted(counts.items()):
            (ended if status in ENDED else current).add_metric([kind, status], n)
            per_kind[kind] = per_kind.get(kind, 0) + n
        for kind, n in sorted(per_kind.items()):
            started.add_metric([kind], n)
        return [ended, current, started]

    def _queue(self, platform: Platform) -> list[Metric]:
        dispatcher = self._dispatcher()
        if dispatcher is None:
            return []
        depth = gauge("tenantry_queue_depth", "Messages waiting in the job queue.")
        depth.add_metric([], dispatcher.depth())
        return [depth]

    def _webhooks(self, platform: Platform) -> list[Metric]:
        with platform.billing_sessions() as session:
            found = webhook_backlog.backlog(session)
        count = gauge(
            "tenantry_webhook_backlog", "Stored webhook events not yet applied (incl. retries)."
        )
        count.add_metric([], found.count)
        oldest = gauge(
            "tenantry_webhook_backlog_oldest_age_seconds",
            "Age of the oldest webhook event not yet applied (0 when none).",
        )
        oldest.add_metric([], found.oldest_age_seconds)
        return [count, oldest]

    def _subscriptions(self, platform: Platform) -> list[Metric]:
        with platform.billing_sessions() as session:
            rows = subscriptions.counts_by_status(session)
        family = gauge(
            "tenantry_subscriptions", "Billing subscriptions by status.", ["app", "plan", "status"]
        )
        for app, plan, status, n in rows:
            family.add_metric([app, plan, status], n)
        return [family]

    def _database_sizes(self, platform: Platform) -> list[Metric]:
        missing = _missing_files(platform)
        family = gauge(
            "tenantry_database_size_bytes", "Bytes the database takes, as it reports.", ["database"]
        )
        for name, engine in (
            ("master", platform.master_engine),
            ("billing", platform.billing_engine),
        ):
            if name in missing:
                continue  # counted by the families that read it; never measured as empty
            with engine.connect() as conn:
                family.add_metric([name], database_bytes(conn))
        return [family]

    def _tenants(self, platform: Platform) -> list[Metric]:
        with platform.sessions() as session:
            sizes = tenant_sizes.tenant_sizes(session, top=top_tenants())
            statuses = tenant_sizes.status_counts(session)
        largest = gauge(
            "tenantry_tenant_database_size_bytes",
            "Bytes of the largest tenant databases (the top N only).",
            ["store"],
        )
        for slug, size in sizes.largest:
            largest.add_metric([slug], size)
        total = gauge("tenantry_tenant_databases_size_bytes", "Bytes of all tenant databases.")
        total.add_metric([], sizes.total_bytes)
        by_status = gauge("tenantry_tenant_databases", "Tenants per database status.", ["status"])
        for status, n in sorted(statuses.items()):
            by_status.add_metric([status], n)
        return [largest, total, by_status]

    def _disk(self, platform: Platform) -> list[Metric]:
        free = gauge("tenantry_disk_free_bytes", "Free bytes on the filesystem.", ["location"])
        size = gauge("tenantry_disk_size_bytes", "Bytes of the filesystem.", ["location"])
        settings = platform.settings
        places: dict[str, Path] = {"data_dir": settings.data_dir}
        for name, url in (("master", settings.master_url), ("billing", settings.billing_url)):
            path = sqlite_path(url)
            # A SQLite database outside the data dir may be on another filesystem.
            if path is not None:
                places[f"{name}_db"] = path.resolve().parent
        seen: set[int] = set()
        for location, path in places.items():
            device = os.stat(path).st_dev
            if location != "data_dir" and device in seen:
                continue  # the same filesystem as one already exported
            seen.add(device)
            usage = shutil.disk_usage(path)
            free.add_metric([location], usage.free)
            size.add_metric([location], usage.total)
        return [free, size]

    def _backups(self, platform: Platform) -> list[Metric]:
        with platform.sessions() as session:
            found = freshness.backup_freshness(session)
        last = gauge(
            "tenantry_backup_last_success_timestamp_seconds",
            "When the newest good backup started (tenant: the oldest among active tenants).",
            ["scope"],
        )
        verified = gauge(
            "tenantry_backup_last_verified_restore_timestamp_seconds",
            "When the last restore test that passed ran (tenant: the oldest among tenants).",
            ["scope"],
        )
        failed = gauge(
            "tenantry_backup_last_restore_test_failed",
            "1 when the newest restore test failed (tenant: any active tenant's), else 0.",
            ["scope"],
        )
        max_age = gauge(
            "tenantry_backup_max_age_seconds",
            "The backup policy's maximum age (the RPO), in seconds.",
            ["scope"],
        )
        for scope in found.scopes:
            last.add_metric([scope.scope], scope.last_success)
            verified.add_metric([scope.scope], scope.last_verified_restore)
            failed.add_metric([scope.scope], 1 if scope.last_restore_test_failed else 0)
            max_age.add_metric([scope.scope], scope.max_age_seconds)
        overdue = gauge(
            "tenantry_backup_tenants_overdue",
            "Active tenants whose newest good backup is older than their policy allows.",
        )
        overdue.add_metric([], found.tenants_overdue)
        return [last, verified, failed, max_age, overdue]

    def _fleet(self, platform: Platform) -> list[Metric]:
        with platform.sessions() as session:
            counts = fleet_status.fleet_counts(session, platform.tenant_spec)
        per_revision = gauge(
            "tenantry_fleet_tenants", "Active tenants per schema revision.", ["revision"]
        )
        for revision, n in sorted(counts.per_revision.items()):
            per_revision.add_metric([revision], n)
        lagging = gauge(
            "tenantry_fleet_tenants_lagging", "Active tenants not at the code's head revision."
        )
        lagging.add_metric([], counts.lagging)
        failed = gauge(
            "tenantry_fleet_tenants_failed", "Tenants whose latest fleet run outcome failed."
        )
        failed.add_metric([], counts.failed)
        return [per_revision, lagging, failed]

    def _workers(self, platform: Platform) -> list[Metric]:
        with platform.sessions() as session:
            alive = workers.alive_count(session)
            last = workers.last_seen(session)
        count = gauge("tenantry_workers_alive", "Job workers heard from within 15 s.")
        count.add_metric([], alive)
        seen = gauge(
            "tenantry_worker_last_seen_timestamp_seconds",
            "The newest worker heartbeat (0 when none was ever heard).",
        )
        seen.add_metric([], last.timestamp() if last is not None else 0.0)
        return [count, seen]


def _why(exc: Exception) -> str:
    # A driver's message may quote its URL (and password): only the error's kind is logged,
    # or tenantry's own message about a missing file, which holds no secret.
    if isinstance(exc, FileNotFoundError) and exc.filename is None:
        return str(exc)
    return type(exc).__name__
