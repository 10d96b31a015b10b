"""``tenantry worker`` and ``tenantry up``: run the job worker, or the API with a worker."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from types import FrameType

import typer
import uvicorn

from tenantry.cli.common import open_platform
from tenantry.cli.init_cmd import print_init_report
from tenantry.cli.output import console, err_console, reports_errors
from tenantry.errors import ConfigurationError
from tenantry.observability import metrics
from tenantry.observability.metrics_dir import (
    multiprocess_dir,
    prepare_multiprocess_dir,
    remove_multiprocess_dir,
)
from tenantry.operations.dispatch import Dispatcher
from tenantry.operations.init import run_init
from tenantry.runtime import Platform, open_dispatcher
from tenantry.services import apikeys
from tenantry.services.apikeys import Scope
from tenantry.services.audit import cli_actor
from tenantry.settings import Settings, load_settings

WORKERS_OPTION = typer.Option(
    2, "--workers", min=1, max=64, help="Jobs run at the same time (worker threads)."
)
NICE_OPTION = typer.Option(
    0,
    "--nice",
    min=0,
    max=19,
    help="Lower the worker's CPU priority by this much (background work yields to the API).",
)
STOP_TIMEOUT_S = 10.0
#: The API as uvicorn loads it, by import path: the CLI never imports the API's modules.
API_FACTORY = "tenantry.api.app:create_app"
#: Under `up` the worker shares the machine with the API: answering a webhook or a request
#: comes before applying events and provisioning, which wait in durable queues anyway.
UP_WORKER_NICE = 10


def _log_to_stderr() -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _serve_metrics(settings: Settings, dispatcher: Dispatcher, host: str, port: int) -> Platform:
    """Serve the worker's metrics at ``http://host:port/metrics``; the platform it reads
    (the caller closes it)."""
    from tenantry.observability import exposition  # only a worker that exports pays for it
    from tenantry.observability.collectors import PlatformCollector

    platform = Platform.open(settings)
    registry = exposition.scrape_registry(PlatformCollector(lambda: platform, lambda: dispatcher))
    try:
        exposition.serve(registry, port=port, host=host)
    except OSError as exc:
        platform.close()
        raise ConfigurationError(
            f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}.",
            "Choose another --metrics-port (or --metrics-host), or stop what listens there.",
        ) from None
    return platform


@reports_errors
def worker(
    workers: int = WORKERS_OPTION,
    nice: int = NICE_OPTION,
    metrics_port: int | None = typer.Option(
        None,
        "--metrics-port",
        min=1,
        max=65535,
        help="Serve this worker's Prometheus metrics at http://HOST:PORT/metrics (no key).",
    ),
    metrics_host: str = typer.Option(
        "127.0.0.1", "--metrics-host", help="Listen here for --metrics-port (0.0.0.0: all)."
    ),
) -> None:
    """Run provisioning jobs from the queue until stopped (Ctrl-C waits for running jobs).

    On start it re-enqueues jobs whose worker died or whose queue message was lost; a job
    interrupted at any point is resumed with the same result. It also applies stored
    webhook events and renews subscriptions. With --metrics-port it serves its metrics
    (webhooks processed, operation durations, query times, and what master, billing and the
    queue hold) for a Prometheus that scrapes a worker on another host.
    """
    _log_to_stderr()
    if nice:
        os.nice(nice)
    if metrics_port is not None or multiprocess_dir() is not None:
        # Its work is scraped: through --metrics-port, or the API beside it (`tenantry up`).
        metrics.enable()
    settings = load_settings()
    dispatcher = open_dispatcher(settings)
    exported = (
        _serve_metrics(settings, dispatcher, metrics_host, metrics_port)
        if metrics_port is not None
        else None
    )

    def ready(recovered: int) -> None:
        err_console.print(
            f"tenantry worker: {workers} thread(s); re-enqueued {recovered} unfinished job(s)"
        )

    try:
        dispatcher.run_workers(workers, on_ready=ready)
    finally:
        dispatcher.close()
        if exported is not None:
            exported.close()
        if multiprocess_dir() is not None:
            from tenantry.observability.exposition import mark_process_dead

            mark_process_dead(os.getpid())


def _ensure_admin_key(settings: Settings) -> str | None:
    """Create an admin API key when no usable one exists; its plaintext, else None."""
    with open_platform(settings) as platform, platform.writer_sessions.begin() as session:
        if apikeys.has_admin_key(session):
            return None
        new = apikeys.create_key(
            session, name="admin (tenantry up)", scope=Scope.ADMIN, actor=cli_actor()
        )
        return new.plaintext


def _raise_exit(signum: int, _frame: FrameType | None) -> None:
    raise typer.Exit(0)


def _start_worker(threads: int) -> subprocess.Popen[bytes]:
    """``tenantry worker`` as a subprocess beside the API, with this environment."""
    command = ["worker", "--workers", str(threads), "--nice", str(UP_WORKER_NICE)]
    return subprocess.Popen([sys.executable, "-m", "tenantry", *command], env=os.environ.copy())


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate the worker subprocess and wait for it (kill it if it does not stop)."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@reports_errors
def up(
    host: str | None = typer.Option(None, "--host", help="Listen here (TENANTRY_API_HOST)."),
    port: int | None = typer.Option(
        None, "--port", min=1, max=65535, help="Listen on this port (TENANTRY_API_PORT)."
    ),
    workers: int = WORKERS_OPTION,
    api_workers: int = typer.Option(
        1,
        "--api-workers",
        min=1,
        max=64,
        help="API processes (more use more cores; each opens its own database pools).",
    ),
    access_log: bool = typer.Option(
        True, "--access-log/--no-access-log", help="Log every HTTP request."
    ),
    with_worker: bool = typer.Option(
        True,
        "--worker/--no-worker",
        help="Start a job worker beside the API; --no-worker serves the API alone, for "
        "workers on other hosts (`tenantry worker` with the same TENANTRY_QUEUE_URL).",
    ),
) -> None:
    """Initialise if needed, then serve the API with a job worker beside it.

    Runs `tenantry init`, creates an admin API key if none exists (printed once), starts
    `tenantry worker` as a subprocess (unless --no-worker) and serves the HTTP API until
    Ctrl-C or SIGTERM, which stop both. GET /metrics of any API process counts the work of all
    of them and of a worker beside them (their metrics meet in TENANTRY_METRICS_DIR, default
    <data dir>/metrics).
    """
    settings = load_settings()
    # Before any metric exists: the API processes and the worker share their counts there.
    metrics_dir = prepare_multiprocess_dir(settings.data_dir)
    print_init_report(run_init(settings))
    plaintext = _ensure_admin_key(settings)
    if plaintext is not None:
        typer.echo(f"admin API key (shown once): {plaintext}")  # one line, never wrapped
        console.print("[dim]send it as 'Authorization: Bearer <key>'; it is not shown again.[/]")
    host = host or settings.api_host
    port = port or settings.api_port
    base = f"http://{host}:{port}"
    previous = signal.signal(signal.SIGTERM, _raise_exit)
    proc = _start_worker(workers) if with_worker else None
    try:
        console.print(f"API:  {base}")
        console.print(f"docs: {base}/docs")
        if proc is not None:
            console.print(f"worker: pid {proc.pid}, {workers} thread(s), nice {UP_WORKER_NICE}")
        elif settings.queue_url:
            console.print("worker: none here; jobs go to the workers on the shared queue")
        else:
            console.print(
                "worker: none; jobs wait in this data dir's queue for `tenantry worker` "
                "on this host (workers on other hosts need TENANTRY_QUEUE_URL=redis://…)"
            )
        # By import path: the app reads the same environment (and settings) as this command.
        uvicorn.run(
            API_FACTORY,
            factory=True,
            workers=api_workers if api_workers > 1 else None,
            host=host,
            port=port,
            log_level="info",
            access_log=access_log,
        )
    except KeyboardInterrupt:
        pass  # Ctrl-C: a normal way to stop
    finally:
        if proc is not None:
            _stop(proc)
        signal.signal(signal.SIGTERM, previous)
        remove_multiprocess_dir(metrics_dir)
