"""``tenantry provision``: create or connect a store's database, in a worker or in-process."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from typing import Any

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from tenantry.cli.common import job_document, open_platform
from tenantry.cli.output import (
    EXIT_FAILED,
    JSON_OPTION,
    console,
    emit_json,
    err_console,
    print_error,
    reports_errors,
)
from tenantry.cli.waiting import DEFAULT_TIMEOUT_S, TIMEOUT_HELP, WorkerWatch
from tenantry.db.master.models import ProvisioningMode, ProvisioningStatus
from tenantry.errors import InvalidInput, TenantryError
from tenantry.operations import provision_request, provision_shared
from tenantry.operations.dispatch import InProcessDispatcher
from tenantry.runtime import Platform, open_dispatcher
from tenantry.services import provisioning, workers
from tenantry.services.audit import cli_actor
from tenantry.settings import load_settings

POLL_SECONDS = 0.2
FINISHED = frozenset(
    {ProvisioningStatus.COMPLETED, ProvisioningStatus.FAILED, ProvisioningStatus.CANCELLED}
)
EXIT_INTERRUPTED = 130


def _read(platform: Platform, job_id: uuid.UUID) -> dict[str, Any]:
    with platform.sessions() as session:
        job = provisioning.get_job(session, job_id)
        doc = job_document(job)
        if job.mode == ProvisioningMode.CREATE_SHARED and job.destination:
            # Where a shared-schema store goes is not secret: server, database, schema.
            doc.update({k: job.destination.get(k) for k in ("server", "database", "schema")})
        return doc


def _describe(doc: dict[str, Any]) -> str:
    step = doc["step"] or doc["status"]
    return f"{step}: {doc['message']}" if doc["message"] else str(step)


def _tables(doc: dict[str, Any]) -> str:
    total = doc["total_tables"]
    return f"tables {doc['tables_created']}/{total}" if total else ""


@contextlib.contextmanager
def _progress(show: bool) -> Iterator[tuple[Progress, TaskID] | None]:
    if not show:
        yield None
        return
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[tables]}"),
        TimeElapsedColumn(),
        console=console,
    )
    with progress:
        yield progress, progress.add_task("queued", total=100, tables="")


class _TimedOut(Exception):
    """Stopped waiting before the job finished."""


def _follow(
    platform: Platform,
    job_id: uuid.UUID,
    *,
    timeout: float,
    show: bool,
    runner: InProcessDispatcher | None,
    watch: WorkerWatch | None,
) -> dict[str, Any]:
    """Poll the job (a fresh session each time) until it finishes; update the bar.

    ``watch`` (for a queued job) stops the wait when no worker runs to take it.
    """
    deadline = time.monotonic() + timeout
    with _progress(show) as bar:
        while True:
            doc = _read(platform, job_id)
            if bar is not None:
                progress, task = bar
                progress.update(
                    task,
                    completed=doc["progress"],
                    description=_describe(doc),
                    tables=_tables(doc),
                )
            if doc["status"] in FINISHED:
                return doc
            if runner is not None:
                runner.raise_failure()
            if watch is not None:
                watch.check()
            if time.monotonic() >= deadline:
                raise _TimedOut
            time.sleep(POLL_SECONDS)


def _cancel(platform: Platform, job_id: uuid.UUID, runner: InProcessDispatcher) -> dict[str, Any]:
    """Cancel the in-process job and wait for it to stop (and remove what it created)."""
    with contextlib.suppress(TenantryError), platform.writer_sessions.begin() as session:
        provisioning.cancel_job(session, provisioning.get_job(session, job_id), actor=cli_actor())
    runner.join()
    return _read(platform, job_id)


def _report(doc: dict[str, Any], slug: str, json_output: bool, note: str | None = None) -> None:
    if json_output:
        emit_json(doc)
    elif doc["status"] == ProvisioningStatus.COMPLETED and doc.get("schema"):
        console.print(
            f"[green]✓[/] store {slug} is provisioned in schema {doc['schema']} of shared "
            f"database {doc['database']} on {doc['server']} ({doc['total_tables']} tables)"
        )
        typer.echo(f"next: tenantry stores show {slug}")
    elif doc["status"] == ProvisioningStatus.COMPLETED:
        console.print(f"[green]✓[/] store {slug} is provisioned ({doc['total_tables']} tables)")
        typer.echo(f"next: tenantry stores show {slug}")
    elif doc["status"] in FINISHED:
        print_error(f"provisioning {slug} {doc['status']}.")
        if doc["error"]:
            print_error(doc["error"], label="")
        if doc["message"]:
            err_console.print(f"[dim]{escape(doc['message'])}[/]")
    if note and not json_output:
        print_error(note, label="")


@reports_errors
def provision(
    slug: str = typer.Argument(..., help="The store to provision (slug or id)."),
    new: bool = typer.Option(
        False,
        "--new",
        help="Create a new database: on the registered server placement picks (a SQLite "
        "file in the data dir when none is registered), or on --server.",
    ),
    server: str | None = typer.Option(
        None,
        "--server",
        help="With --new: the registered server to create the database on, or `sqlite` for a "
        "SQLite file in the data dir.",
    ),
    shared: str | None = typer.Option(
        None,
        "--shared",
        metavar="SERVER[/DATABASE]",
        help="With --new: give the store its own schema in a database shared with other "
        "stores on registered PostgreSQL server SERVER (DATABASE: tenantry_shared_1 by "
        "default, created when missing). Runs here with a progress bar, unless --queue.",
    ),
    queue: bool = typer.Option(
        False,
        "--queue",
        help="With --shared: queue the job for a worker instead of running it here (follow "
        "it with --wait, or `tenantry jobs show ID`).",
    ),
    connect: str | None = typer.Option(
        None,
        "--connect",
        help="Use the existing (empty or matching) database at this URL; tenantry never "
        "drops it. Its password is stored encrypted.",
    ),
    wait: bool = typer.Option(
        False, "--wait", help="Show progress until the job finishes; exit 0 only if it completed."
    ),
    inline: bool = typer.Option(
        False,
        "--inline",
        help="Run the job in this process instead of a worker (for when no `tenantry worker` "
        "runs). Implies --wait; on timeout or Ctrl-C the job is cancelled and cleaned up.",
    ),
    timeout: float | None = typer.Option(None, "--timeout", min=0.0, help=TIMEOUT_HELP),
    json_output: bool = JSON_OPTION,
) -> None:
    """Create (--new) or connect (--connect URL) a store's database and build its tables.

    --new --shared SERVER (or SERVER/DATABASE) instead gives the store its own schema in a
    PostgreSQL database shared with other stores (schema per tenant; MariaDB and SQLite are
    refused).
    That job runs in this process by default (as --inline; run the same command again to
    resume it after a crash), or in a worker with --queue.

    --new without --server places the database on a registered server that accepts new
    stores, has room (max tenants, max bytes) and matches the store's --region/--tier: the
    least loaded (TENANTRY_PLACEMENT=least-tenants, the default, or least-bytes). When none
    fits, nothing is recorded and the error says why each server was passed (exit 1).

    The job is queued for a worker (`tenantry worker`, or `tenantry up`), which survives
    crashes: a killed worker's job is resumed by the next one. --wait follows it with a
    progress bar, and stops within 5 s (exit 1, the job left queued) when no worker runs,
    unless --timeout is given; --inline runs it right here. With --json the final job is
    printed (the queued job without --wait).
    """
    if shared is not None:
        if not new or server or connect:
            raise InvalidInput(
                "--shared goes with --new alone (it names the server itself).",
                f"e.g. `tenantry provision {slug} --new --shared pg`.",
            )
        if queue and inline:
            raise InvalidInput("give --queue (a worker runs it) or --inline (here), not both.")
        inline = not queue
    elif queue:
        raise InvalidInput(
            "--queue goes with --shared: other provisioning is queued for a worker already.",
            f"e.g. `tenantry provision {slug} --new --wait`.",
        )
    if new == bool(connect):
        raise InvalidInput(
            "give either --new (optionally with --server NAME) or --connect URL.",
            "e.g. `tenantry provision my-shop --new --wait`.",
        )
    if server and not new:
        raise InvalidInput("--server goes with --new; --connect takes a URL instead.")
    settings = load_settings()
    with open_platform(settings) as platform:
        runner: InProcessDispatcher | None = None
        watch: WorkerWatch | None = None
        if inline:  # the same steps as in a worker, in a thread while this one follows them
            runner = InProcessDispatcher(platform, background=True, name="cli:")
        dispatcher = runner if runner is not None else open_dispatcher(settings)
        try:
            if shared is not None:
                requested = provision_shared.request_shared(
                    platform, dispatcher, slug, shared, actor=cli_actor()
                )
            else:
                requested = provision_request.request(
                    platform,
                    dispatcher,
                    slug,
                    mode=ProvisioningMode.CREATE_NEW if new else ProvisioningMode.CONNECT_EXISTING,
                    server=server,
                    url=connect,
                    url_field="--connect",
                    actor=cli_actor(),
                )
        finally:
            if runner is None:
                dispatcher.close()
        job_id, slug = requested.job_id, requested.slug
        if runner is None:
            watch = WorkerWatch(
                platform.sessions,
                what=f"provisioning job {job_id}",
                patient=timeout is not None,
                quiet=json_output,
            )
        if not (wait or inline):
            doc = _read(platform, job_id)
            if json_output:
                emit_json(doc)
            else:
                console.print(f"[green]✓[/] queued provisioning job {job_id} for store {slug}")
                typer.echo(f"follow it: tenantry jobs show {job_id}")
                with platform.sessions() as session:
                    if not workers.alive_count(session):
                        print_error(
                            "no job worker is running; the job waits for one.",
                            workers.START_A_WORKER,
                            label="note:",
                        )
            return
        note: str | None = None
        try:
            doc = _follow(
                platform,
                job_id,
                timeout=DEFAULT_TIMEOUT_S if timeout is None else timeout,
                show=not json_output,
                runner=runner,
                watch=watch,
            )
        except (_TimedOut, KeyboardInterrupt) as exc:
            stopped = "timed out" if isinstance(exc, _TimedOut) else "interrupted"
            if runner is not None:
                doc = _cancel(platform, job_id, runner)
                note = f"{stopped} after waiting; the job was cancelled."
            else:
                doc = _read(platform, job_id)
                note = (
                    f"{stopped} while the job is {doc['status']}; a worker goes on with it: "
                    f"tenantry jobs show {job_id}"
                )
            _report(doc, slug, json_output, note)
            raise typer.Exit(
                EXIT_INTERRUPTED if stopped == "interrupted" else EXIT_FAILED
            ) from None
        if runner is not None:
            runner.join()
    _report(doc, slug, json_output)
    if doc["status"] != ProvisioningStatus.COMPLETED:
        raise typer.Exit(EXIT_FAILED)
