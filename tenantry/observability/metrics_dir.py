"""The directory processes share their metrics in (``prometheus-client``'s multiprocess mode).

Kept apart from everything that imports ``prometheus_client``: that library chooses its
value class (per-process memory, or files in ``PROMETHEUS_MULTIPROC_DIR``) when it is first
imported, so ``tenantry up`` must set the variable before it, or any metric, is imported.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
METRICS_DIR_ENV = "TENANTRY_METRICS_DIR"


def multiprocess_dir() -> Path | None:
    """The directory processes share their metrics in, when multiprocess mode is on."""
    found = os.environ.get(MULTIPROC_ENV)
    return Path(found) if found else None


def prepare_multiprocess_dir(data_dir: Path) -> Path:
    """Make an empty private directory for the metrics of the processes about to start
    (``TENANTRY_METRICS_DIR``, else ``<data dir>/metrics``) and point
    ``PROMETHEUS_MULTIPROC_DIR`` at it for this process and its children.

    Its metric files are removed first: those of an earlier run's processes would add their
    counts to this run's (Prometheus expects counters to start again from zero when a service
    restarts). Nothing else in it is touched.
    """
    chosen = Path(os.environ.get(METRICS_DIR_ENV) or data_dir / "metrics")
    chosen.mkdir(mode=0o700, parents=True, exist_ok=True)
    _remove_metric_files(chosen)
    os.environ[MULTIPROC_ENV] = str(chosen)
    return chosen


def _remove_metric_files(path: Path) -> None:
    # prometheus-client names them <type>_<pid>.db (counter_, histogram_, gauge_livesum_ …).
    for found in path.glob("*.db"):
        found.unlink(missing_ok=True)


def remove_multiprocess_dir(path: Path) -> None:
    """Remove the metric files of :func:`prepare_multiprocess_dir`'s directory once its
    processes ended (and the directory, if nothing else is in it)."""
    _remove_metric_files(path)
    with contextlib.suppress(OSError):
        path.rmdir()
    if os.environ.get(MULTIPROC_ENV) == str(path):
        del os.environ[MULTIPROC_ENV]
