"""Exposing metrics: the scrape registry, multiprocess mode, and a worker's own endpoint.

Several processes serve one installation (``tenantry up --api-workers N`` plus its worker).
``prometheus-client``'s multiprocess mode has each process write its counters and
histograms to files in one private directory (``PROMETHEUS_MULTIPROC_DIR``), and a scrape of
any API process sums them: :func:`prepare_multiprocess_dir` is what ``tenantry up`` calls,
before any metric is observed, so that the API processes and the worker it starts all
inherit the directory. Without it, a process exports its own metrics (single-process mode).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
METRICS_DIR_ENV = "TENANTRY_METRICS_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST


def multiprocess_dir() -> Path | None:
    """The directory processes share their metrics in, when multiprocess mode is on."""
    found = os.environ.get(MULTIPROC_ENV)
    return Path(found) if found else None


def prepare_multiprocess_dir(data_dir: Path) -> Path:
    """Make an empty private directory for the metrics of the processes about to start
    (``TENANTRY_METRICS_DIR``, else ``<data dir>/metrics``) and point
    ``PROMETHEUS_MULTIPROC_DIR`` at it for this process and its children.

    Emptied first: files left by processes of an earlier run would add their counts to this
    run's (Prometheus expects counters to start again from zero when a service restarts).
    """
    chosen = Path(os.environ.get(METRICS_DIR_ENV) or data_dir / "metrics")
    if chosen.is_dir():
        shutil.rmtree(chosen)
    chosen.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(chosen)
    return chosen


def remove_multiprocess_dir(path: Path) -> None:
    """Remove the directory :func:`prepare_multiprocess_dir` made, once its processes ended."""
    shutil.rmtree(path, ignore_errors=True)
    if os.environ.get(MULTIPROC_ENV) == str(path):
        del os.environ[MULTIPROC_ENV]


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
