"""What the benchmarks share: progress output, a thread pool with a bar, percentiles, an
environment of their own, and PostgreSQL housekeeping (checkpoint, listing, dropping)."""

from __future__ import annotations

import os
import platform as host
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from tenantry.db.admin import drop_database
from tenantry.db.engines import make_engine
from tenantry.db.logins import drop_login
from tenantry.db.urls import parse_url

progress_console = Console(stderr=True)
T = TypeVar("T")
R = TypeVar("R")


def say(message: str) -> None:
    """A timestamped line on stderr."""
    progress_console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {message}")


def parallel(label: str, items: Sequence[T], fn: Callable[[T], R], workers: int) -> list[R]:
    """``fn`` over ``items`` on ``workers`` threads with a progress bar; results in order.

    On an error or Ctrl-C, work not yet started is cancelled and running work awaited.
    """
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=progress_console,
        transient=True,
    )
    pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="bench")
    try:
        with progress:
            task = progress.add_task(label, total=len(items))
            futures: list[Future[R]] = [pool.submit(fn, item) for item in items]
            for future in as_completed(futures):
                future.result()
                progress.advance(task)
            return [f.result() for f in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


#: Where the benches write their JSON by default, as a git pathspec left out of "-dirty".
RESULTS = ":(exclude)bench/results"


def run_metadata(**servers: str) -> dict[str, object]:
    """What a bench's JSON says about the run: the machine, the versions, the commit and the
    servers measured (``servers``: name -> version string), so two runs can be compared."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        # The benches' own output (bench/results) is not the code measured: a pass writing
        # its JSON files there would mark every bench after the first "-dirty".
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", RESULTS],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        )
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = "unknown", False
    versions = {}
    packages = ("tenantry", "sqlalchemy", "psycopg", "pymysql", "fastapi", "uvicorn", "django")
    for package in (*packages, "django-tenants"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": host.platform(),
            "python": host.python_version(),
            # Before the run (after waiting for quiet) and at its end: how fast the machine
            # was, to tell its drift from ours.
            "quiet_at_start": _START.get("quiet"),
            "probe_at_start": _START.get("probe"),
            "probe": machine_probe(),
        },
        "versions": versions,
        "servers": servers,
        "commit": commit + ("-dirty" if dirty else ""),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


#: The benches' PostgreSQL server (``TENANTRY_BENCH_POSTGRES_URL``), the machine probe's too.
PG_URL = os.environ.get(
    "TENANTRY_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def machine_probe() -> dict[str, float | None]:
    """How fast the machine is now, on three fixed tasks: ``cpu_ms`` (a pure-Python loop),
    ``fsync_ms`` (a 4 KiB write made durable) and ``query_us`` (``SELECT 1`` on a held
    PostgreSQL connection; None without one). Each the median of several tries.

    Two passes minutes apart on this 2-core VM moved every absolute figure by up to 20 % in
    the same direction, floors included; the probe in each JSON tells that drift of the
    machine from a change in tenantry (``readme_table.py --compare`` prints both)."""
    cpu = []
    for _ in range(5):
        t0 = time.perf_counter()
        sum(i * i for i in range(1_000_000))
        cpu.append((time.perf_counter() - t0) * 1000)
    fsyncs = []
    with tempfile.TemporaryFile() as f:
        for _ in range(20):
            t0 = time.perf_counter()
            f.write(b"\0" * 4096)
            f.flush()
            os.fsync(f.fileno())
            fsyncs.append((time.perf_counter() - t0) * 1000)
    return {
        "cpu_ms": round(statistics.median(cpu), 2),
        "fsync_ms": round(statistics.median(fsyncs), 3),
        "query_us": _query_us(),
    }


def _query_us() -> float | None:
    engine = make_engine(parse_url(PG_URL), pooled=False)
    try:
        with engine.connect() as conn:
            for _ in range(50):  # the connection's and the backend's first queries are slower
                conn.exec_driver_sql("SELECT 1").scalar()
            times = []
            for _ in range(200):
                t0 = time.perf_counter()
                conn.exec_driver_sql("SELECT 1").scalar()
                times.append((time.perf_counter() - t0) * 1e6)
        return round(statistics.median(times), 1)
    except DBAPIError:
        return None
    finally:
        engine.dispose()


#: What :func:`wait_until_quiet` found when this process's run began (in the JSON's machine).
_START: dict[str, Mapping[str, object]] = {}


def wait_until_quiet(
    max_busy: float = 0.10, windows: int = 3, timeout_s: float = 180.0
) -> dict[str, object]:
    """Wait until the machine's CPUs have been at most ``max_busy`` busy (all CPUs together)
    for ``windows`` one-second windows in a row, at most ``timeout_s``; then probe it.

    What a run inherits is measured with it otherwise (a server of the bench before winding
    down, the kernel writing back, autovacuum). A machine that never got quiet is measured
    anyway, and said: the record (``quiet_at_start`` in the JSON's machine) names the busiest
    processes of the last window. What the VM cannot see is the host's own speed: two passes
    whose every bench passed this gate at once still saw the probe after it move 30-70 % at
    the same bench (``readme_table.py --compare`` prints it).
    """
    import psutil  # the bench extra's; a bench's --help runs without it

    started = time.monotonic()
    in_a_row = 0
    busy = 1.0
    while True:
        # iowait counts as busy: a writeback in progress slows the run as much as a process.
        busy = (100 - psutil.cpu_times_percent(interval=1.0).idle) / 100
        in_a_row = in_a_row + 1 if busy <= max_busy else 0
        waited = time.monotonic() - started
        if in_a_row >= windows or waited >= timeout_s:
            break
    record: dict[str, object] = {
        "quiet": in_a_row >= windows,
        "waited_s": round(waited, 1),
        "busy_last_window": round(busy, 3),
        "max_busy": max_busy,
    }
    if not record["quiet"]:
        record["busiest"] = busiest_processes()
        say(f"[yellow]the machine was not quiet after {waited:.0f} s: {record['busiest']}[/]")
    elif waited > windows + 1:
        say(f"waited {waited:.0f} s for the machine to be quiet")
    _START["quiet"] = record
    _START["probe"] = machine_probe()
    return record


def busiest_processes(top: int = 5) -> list[str]:
    """The ``top`` processes by CPU over one second, as "name (pid): NN %"."""
    import psutil

    procs = list(psutil.process_iter(["pid", "name"]))
    for proc in procs:
        with suppress(psutil.Error):
            proc.cpu_percent(None)
    time.sleep(1.0)
    used: list[tuple[float, str]] = []
    for proc in procs:
        with suppress(psutil.Error):
            used.append((proc.cpu_percent(None), f"{proc.info['name']} ({proc.info['pid']})"))
    used.sort(reverse=True)
    return [f"{name}: {share:.0f} %" for share, name in used[:top]]


#: Fewer samples than this have no p99: its nearest rank would be the maximum, one sample, which
#: no second run reproduces.
P99_SAMPLES = 100


def summary(values: list[float]) -> dict[str, float | None]:
    """Median, mean, p90, p99 and max of ``values`` (the mean shows what the median hides);
    p99 is None with fewer than :data:`P99_SAMPLES` values, ``samples`` says how many."""
    return {
        "samples": len(values),
        "median": statistics.median(values),
        "mean": statistics.fmean(values),
        "p90": pct(values, 0.9),
        "p99": pct(values, 0.99) if len(values) >= P99_SAMPLES else None,
        "max": max(values),
    }


def num(value: float | None, spec: str = ".1f") -> str:
    """``value`` formatted with ``spec``, or "—" when the figure was not measured (a p99 of
    too few samples)."""
    return "—" if value is None else format(value, spec)


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@contextmanager
def environment(values: dict[str, str], unset: Sequence[str]) -> Iterator[None]:
    """``os.environ`` with ``values`` set and the ``unset`` variables removed, then restored."""
    saved = {k: os.environ.get(k) for k in (*values, *unset)}
    for k in unset:
        os.environ.pop(k, None)
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def checkpoint(server: URL) -> None:
    """Flush the OS's and the server's dirty pages, so the next step does not pay for the
    previous one's writes."""
    os.sync()
    engine = make_engine(server, pooled=False)
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("CHECKPOINT")
    except DBAPIError as exc:  # not a superuser (nor pg_checkpoint): measure anyway
        say(f"[yellow]CHECKPOINT refused, timings may include its writes: {exc.orig}[/]")
    finally:
        engine.dispose()


def database_names(server: URL, wanted: Callable[[str], bool]) -> list[str] | None:
    """The server's databases whose name is ``wanted``; None (said) when they cannot be
    listed."""
    return _names(server, "SELECT datname FROM pg_database", "databases", wanted)


def role_names(server: URL) -> list[str] | None:
    """The server's roles (cluster-wide: a bench that makes logins must drop them too)."""
    return _names(server, "SELECT rolname FROM pg_roles", "roles", lambda _: True)


def _names(server: URL, query: str, what: str, wanted: Callable[[str], bool]) -> list[str] | None:
    engine = make_engine(server, pooled=False)
    try:
        with engine.connect() as conn:
            names = conn.execute(text(query)).scalars()
            return [str(n) for n in names if wanted(str(n))]
    except Exception as exc:
        say(f"[yellow]cannot list the server's {what} ({exc})[/]")
        return None
    finally:
        engine.dispose()


def server_version(server: URL) -> str:
    """The PostgreSQL server's version (``SHOW server_version``), for a bench's JSON."""
    engine = make_engine(server, pooled=False)
    try:
        with engine.connect() as conn:
            return str(conn.execute(text("SHOW server_version")).scalar_one())
    finally:
        engine.dispose()


def drop_databases(server: URL, names: Sequence[str], workers: int) -> None:
    """Drop ``names`` on ``server``, ``workers`` at a time."""
    if names:
        parallel(
            f"dropping {len(names)} databases",
            names,
            lambda name: drop_database(server.set(database=name)),
            workers,
        )


def drop_logins(server: URL, wanted: Callable[[str], bool], workers: int) -> None:
    """Drop the logins that are ``wanted`` (a run's stores' runtime logins,
    ``t_<slug>_<id>_a``/``_b``, and its spares' ones, named as their databases): dropping a
    database leaves its logins, which are cluster-wide. Through tenantry's own drop
    (privileges revoked, sessions ended)."""
    names = [n for n in role_names(server) or [] if wanted(n)]
    if names:
        parallel(
            f"dropping {len(names)} logins", names, lambda name: drop_login(server, name), workers
        )


def changed(found: dict[str, list[str]]) -> bool:
    """Whether :meth:`ServerDatabases.report` found the server changed (databases or roles)."""
    return any(found.values())


class ServerDatabases:
    """The server's database list and role list before a bench and after it: a bench must
    leave the server as it found it (run it on a quiet server: other work's databases and
    roles count too)."""

    def __init__(self, server: URL | None) -> None:
        self.server = server
        self.before = database_names(server, lambda _: True) if server is not None else None
        self.roles_before = role_names(server) if server is not None else None

    def report(self) -> dict[str, list[str]]:
        """``left_behind`` and ``gone`` since the start (and ``roles_left_behind``,
        ``roles_gone`` when roles are watched), printed when not empty."""
        if self.server is None or self.before is None:
            return {"left_behind": [], "gone": []}
        after = database_names(self.server, lambda _: True) or []
        left = sorted(set(after) - set(self.before))
        gone = sorted(set(self.before) - set(after))
        if left or gone:
            say(f"[red]databases on the server: left behind {left}, gone {gone}[/]")
        else:
            say(f"databases on the server: as before ({len(after)})")
        found = {"left_behind": left, "gone": gone}
        if self.roles_before is not None:
            roles = role_names(self.server) or []
            found["roles_left_behind"] = sorted(set(roles) - set(self.roles_before))
            found["roles_gone"] = sorted(set(self.roles_before) - set(roles))
            if found["roles_left_behind"] or found["roles_gone"]:
                say(
                    f"[red]roles on the server: left behind {found['roles_left_behind']}, "
                    f"gone {found['roles_gone']}[/]"
                )
            else:
                say(f"roles on the server: as before ({len(roles)})")
        return found


@dataclass(frozen=True)
class CpuSplit:
    """Which CPUs the load generator gets and which the measured side (server, its worker,
    PostgreSQL) gets, so a sender's own CPU use cannot change the server's figure: on 2 cores
    an unpinned sender takes its share from the server, and a heavier sender (autocannon's
    event loop against wrk's C) then measures itself (PostgreSQL: -36 % rate, same run)."""

    server: frozenset[int]
    sender: frozenset[int]

    @classmethod
    def of_this_machine(cls) -> CpuSplit | None:
        """The last CPU for the sender, the others for the server; None on one CPU."""
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            return None
        return cls(frozenset(cpus[:-1]), frozenset(cpus[-1:]))

    def describe(self) -> dict[str, list[int]]:
        """For the JSON: the CPUs each side ran on."""
        return {"server": sorted(self.server), "sender": sorted(self.sender)}


def on_cpus(cpus: frozenset[int] | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` that confines a child process (and what it starts) to ``cpus``."""
    if cpus is None:
        return None

    def pin() -> None:
        os.sched_setaffinity(0, cpus)

    return pin


@contextmanager
def postgres_on_cpus(cpus: frozenset[int] | None) -> Iterator[str]:
    """Confine this machine's PostgreSQL processes to ``cpus`` for the block, restoring each
    one's affinity after (new backends fork from the postmaster and inherit it). Yields what
    was done, for the JSON: pinned, or why not (not root, not running here)."""
    if cpus is None:
        yield "not pinned (one CPU)"
        return
    saved: dict[int, set[int]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "comm").read_text().strip() not in {"postgres", "postmaster"}:
                continue
            pid = int(proc.name)
            saved[pid] = os.sched_getaffinity(pid)
            os.sched_setaffinity(pid, cpus)
        except (OSError, ValueError):
            continue  # gone, or not ours to pin
    try:
        yield f"pinned ({len(saved)} processes)" if saved else "not pinned (none found)"
    finally:
        for pid, mask in saved.items():
            with suppress(OSError):
                os.sched_setaffinity(pid, mask)
