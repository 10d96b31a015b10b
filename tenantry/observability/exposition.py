"""Exposing metrics: the scrape registry, multiprocess mode, and a worker's own endpoint.

Several processes serve one installation (``tenantry up --api-workers N`` plus its worker).
``prometheus-client``'s multiprocess mode has each process write its counters and
histograms to files in one private directory (``PROMETHEUS_MULTIPROC_DIR``, made by
``tenantry up`` before any metric exists: :mod:`~tenantry.observability.metrics_dir`), and a
scrape of any API process sums them. Without it, a process exports its own metrics.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from tenantry.observability.metrics_dir import multiprocess_dir

#: The classic text format every Prometheus (2.x and 3.x) reads; names are plain ASCII.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4


def mark_process_dead(pid: int) -> None:
    """Drop the live-only gauges of process ``pid`` (it exited); counters stay summed."""
    if multiprocess_dir() is not None:
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


class _ThisProcess(Collector):
    """The default registry's metrics (this process's own), inside another registry."""

    def collect(self) -> Iterator[Metric]:
        """What the default registry collects now."""
        yield from REGISTRY.collect()


def scrape_registry(*collectors: Collector) -> CollectorRegistry:
    """A registry with the in-process metrics (every process's, summed, in multiprocess
    mode; else this process's) and ``collectors``."""
    registry = CollectorRegistry(auto_describe=False)
    if multiprocess_dir() is not None:
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_ThisProcess())
    for collector in collectors:
        registry.register(collector)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The registry in Prometheus's text exposition format (:data:`CONTENT_TYPE`)."""
    return generate_latest(registry)


def serve(registry: CollectorRegistry, *, port: int, host: str) -> None:
    """Serve ``registry`` at ``http://host:port/metrics`` from a background thread."""
    start_http_server(port, addr=host, registry=registry)
