"""The metrics observed in-process (counters, histograms, one gauge), and the hooks that feed them.

Importing this module is cheap and imports nothing of ``prometheus_client``: the metric
objects are built on first use (:func:`instruments`), and only in a process that exports
them: the API and the worker call :func:`enable`; elsewhere (CLI commands) every hook
returns at once, so a command pays nothing for metrics no one will scrape. That matters because
``prometheus_client`` chooses between its single-process and multiprocess value classes
when it is first imported, from ``PROMETHEUS_MULTIPROC_DIR``; ``tenantry up`` sets that
variable before anything observes a metric (see :mod:`tenantry.observability.exposition`).

The names are the contract of the metrics catalog: the alert rules and the dashboard use them.
Every label value here is from a bounded set (route templates, roles, statuses, app ids and
processor names that passed verification), never a URL, a slug or a secret.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import Counter, Gauge, Histogram
    from sqlalchemy import Engine

#: Query latency buckets: the alert thresholds (0.5 s, 1 s) are bucket bounds.
QUERY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Operations run from a second to hours (a backup of a large tenant, a fleet run).
OPERATION_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 24 * 3600.0)
#: The route label of a request no route matched (404s): one value, whatever the path.
UNMATCHED = "<unmatched>"
#: The processor label of a delivery to a processor tenantry does not know (its name is
#: the caller's text, so it is never used as a label value).
UNKNOWN = "<unknown>"
#: Where the per-query start time is kept on a cursor execution's context.
_STARTED = "_tenantry_query_started"


_enabled = False


def enable() -> None:
    """Observe the in-process metrics in this process from now on (an exporting process)."""
    global _enabled
    _enabled = True


def enabled() -> bool:
    """Whether this process observes the in-process metrics."""
    return _enabled


@dataclass(frozen=True)
class Instruments:
    """Every in-process metric object (see the catalog in the module docstring)."""

    http_requests: Counter
    http_duration: Histogram
    db_query_duration: Histogram
    webhooks_received: Counter
    webhooks_rejected: Counter
    webhooks_processed: Counter
    subscriptions_created: Counter
    subscriptions_canceled: Counter
    operation_duration: Histogram
    tenant_engines: Gauge
    tenant_engine_evictions: Counter


@cache
def instruments() -> Instruments:
    """The metric objects, made (and registered in the default registry) on first use."""
    from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

    # ``*_created`` series double every counter's series for a timestamp no rule uses (and
    # multiprocess mode, which `tenantry up` runs in, has none): left out everywhere.
    disable_created_metrics()  # type: ignore[no-untyped-call]
    made = _made(Counter, Gauge, Histogram)
    _start_at_zero(made)
    return made


#: The outcomes of applying a stored webhook event.
WEBHOOK_OUTCOMES = ("processed", "failed", "ignored")


def _start_at_zero(made: Instruments) -> None:
    # A counter series that first appears at 1 is no increase to rate()/increase(): the first
    # failed webhooks of a processor would escape the failure-ratio alert. Each processor's
    # outcomes exist at 0 from the start.
    from tenantry.billing.processors import PROCESSORS

    for processor in PROCESSORS:
        for outcome in WEBHOOK_OUTCOMES:
            made.webhooks_processed.labels(processor, outcome)


def _made(counter: Any, gauge: Any, histogram: Any) -> Instruments:
    return Instruments(
        http_requests=counter(
            "tenantry_http_requests_total",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
        ),
        http_duration=histogram(
            "tenantry_http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route template.",
            ["method", "route"],
        ),
        db_query_duration=histogram(
            "tenantry_db_query_duration_seconds",
            "Time a database statement took, by database role (master, billing, tenant).",
            ["role"],
            buckets=QUERY_BUCKETS,
        ),
        webhooks_received=counter(
            "tenantry_webhooks_received_total",
            "Webhook events verified and stored (duplicates not counted).",
            ["app", "processor", "event_type"],
        ),
        webhooks_rejected=counter(
            "tenantry_webhooks_rejected_total",
            "Webhook deliveries refused, by processor and reason.",
            ["processor", "reason"],
        ),
        webhooks_processed=counter(
            "tenantry_webhooks_processed_total",
            "Attempts at applying a stored webhook event, by outcome.",
            ["processor", "status"],
        ),
        subscriptions_created=counter(
            "tenantry_subscriptions_created_total",
            "Billing subscriptions created, by app and plan.",
            ["app", "plan"],
        ),
        subscriptions_canceled=counter(
            "tenantry_subscriptions_canceled_total",
            "Billing subscriptions that became canceled, by app and plan.",
            ["app", "plan"],
        ),
        operation_duration=histogram(
            "tenantry_operation_duration_seconds",
            "Time from an operation's start to its end in this process, by kind and outcome.",
            ["kind", "status"],
            buckets=OPERATION_BUCKETS,
        ),
        tenant_engines=gauge(
            "tenantry_tenant_engines",
            "Tenant database engines held in the router cache.",
            multiprocess_mode="livesum",
        ),
        tenant_engine_evictions=counter(
            "tenantry_tenant_engine_evictions_total",
            "Tenant engines dropped from the router cache (idle, over the cap, or stale).",
        ),
    )


# ---------------------------------------------------------------------- hooks


def http_request(method: str, route: str, status: int, seconds: float) -> None:
    """One answered HTTP request (``route``: its template, or :data:`UNMATCHED`)."""
    if not _enabled:
        return
    found = instruments()
    found.http_requests.labels(method, route, str(status)).inc()
    found.http_duration.labels(method, route).observe(seconds)


def time_queries(engine: Engine, role: str) -> None:
    """Observe every statement ``engine`` runs in ``tenantry_db_query_duration_seconds``
    under ``role`` (call once per engine, where it is made)."""
    if not _enabled:
        return
    from sqlalchemy import event

    histogram = instruments().db_query_duration.labels(role)

    def before(
        _conn: Any, _cursor: Any, _stmt: Any, _params: Any, context: Any, _many: Any
    ) -> None:
        if context is not None:
            setattr(context, _STARTED, time.perf_counter())

    def after(*args: Any) -> None:
        context = args[4]
        started = getattr(context, _STARTED, None) if context is not None else None
        if started is not None:
            histogram.observe(time.perf_counter() - started)

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)


def webhook_received(app: str, processor: str, event_type: str) -> None:
    """A verified delivery stored as a new event."""
    if not _enabled:
        return
    instruments().webhooks_received.labels(app, processor, event_type[:100]).inc()


def webhook_rejected(processor: str, reason: str) -> None:
    """A delivery refused (``processor``: a known processor's name, or :data:`UNKNOWN`)."""
    if not _enabled:
        return
    instruments().webhooks_rejected.labels(processor, reason).inc()


def webhook_processed(processor: str, status: str, events: int = 1) -> None:
    """``events`` attempts at applying stored events ended ``status`` (processed, ignored,
    failed)."""
    if not _enabled:
        return
    instruments().webhooks_processed.labels(processor, status).inc(events)


def subscription_created(app: str, plan: str) -> None:
    """A billing subscription was created."""
    if not _enabled:
        return
    instruments().subscriptions_created.labels(app, plan).inc()


def subscription_canceled(app: str, plan: str) -> None:
    """A billing subscription became canceled."""
    if not _enabled:
        return
    instruments().subscriptions_canceled.labels(app, plan).inc()


def operation_ended(kind: str, status: str, seconds: float | None) -> None:
    """An operation this process held ended ``status`` after ``seconds`` from its start."""
    if not _enabled:
        return
    if seconds is not None:
        instruments().operation_duration.labels(kind, status).observe(max(seconds, 0.0))


def tenant_engines(count: int, evicted: int = 0) -> None:
    """The router now holds ``count`` engines, after dropping ``evicted``."""
    if not _enabled:
        return
    found = instruments()
    found.tenant_engines.set(count)
    if evicted:
        found.tenant_engine_evictions.inc(evicted)
