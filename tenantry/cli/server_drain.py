"""``tenantry servers drain`` and ``servers rebalance``: move stores off a server, or spread
them, one verified ``stores move`` per store (registered on the ``servers`` group by
:mod:`tenantry.cli.servers`)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tenantry.cli.common import open_platform
from tenantry.cli.output import (
    EXIT_FAILED,
    JSON_OPTION,
    console,
    emit_json,
    err_console,
    reports_errors,
)
from tenantry.operations import server_drain, server_rebalance
from tenantry.operations.move_batch import FAILED, StoreOutcome
from tenantry.operations.server_drain import MAX_CONCURRENCY, ServerDrain
from tenantry.operations.server_rebalance import Rebalance
from tenantry.runtime import open_dispatcher
from tenantry.services.audit import cli_actor
from tenantry.services.move_progress import MoveProgress
from tenantry.services.rebalance_plan import PlannedMove, Unplaced
from tenantry.settings import load_settings

CONCURRENCY_HELP = f"Stores moving at once (1 to {MAX_CONCURRENCY})."


class _Board:
    """The live progress: stores done of total, and the stores moving now with their step."""

    def __init__(self, total: int, done: int, *, disabled: bool) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("stores"),
            TimeElapsedColumn(),
            console=err_console,
            disable=disabled,
        )
        self.task = self.progress.add_task("starting", total=total, completed=done)
        self.moving: dict[str, str] = {}
        self.lock = threading.Lock()

    def step(self, slug: str, state: MoveProgress) -> None:
        with self.lock:
            self.moving[slug] = f"{slug} ({state.step} {state.progress}%)"
            self._show()

    def done(self, outcome: StoreOutcome) -> None:
        with self.lock:
            self.moving.pop(outcome.slug, None)
            if outcome.status != FAILED:
                self.progress.advance(self.task)
            self._show()

    def _show(self) -> None:
        current = ", ".join(self.moving.values()) or "-"
        self.progress.update(self.task, description=f"moving {current}")

    @contextmanager
    def shown(self) -> Iterator[None]:
        self.progress.start()
        try:
            yield
        finally:
            self.progress.stop()


def _plan_table(title: str, moves: list[PlannedMove], unplaced: list[Unplaced]) -> Table:
    table = Table(title=title)
    for column in ("store", "from", "to"):
        table.add_column(column)
    for move in moves:
        table.add_row(escape(move.slug), escape(move.source), escape(move.target))
    for store in unplaced:
        table.add_row(escape(store.slug), "-", f"[red]cannot move:[/] {escape(store.why)}")
    return table


def _outcome_table(title: str, outcomes: list[StoreOutcome], unplaced: list[Unplaced]) -> Table:
    table = Table(title=title)
    for column in ("store", "from", "to", "outcome", "seconds"):
        table.add_column(column)
    for o in outcomes:
        mark = "[red]failed:[/] " + escape(o.error or "") if o.status == FAILED else o.status
        took = f"{o.seconds:.1f}" if o.seconds is not None else "-"
        table.add_row(escape(o.slug), escape(o.source), escape(o.target), mark, took)
    for store in unplaced:
        why = f"[red]cannot move:[/] {escape(store.why)}"
        table.add_row(escape(store.slug), "-", "-", why, "-")
    return table


@reports_errors
def drain(
    name: str = typer.Argument(..., help="The registered server to empty."),
    concurrency: int = typer.Option(1, "--concurrency", "-c", help=CONCURRENCY_HELP),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan; change nothing."),
    queue: bool = typer.Option(
        False, "--queue", help="Hand the drain to the workers and print its operation id."
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """Move every store off a server: mark it not accepting, then move each store to the
    server placement picks for it (its residency region and tier, the targets' capacity),
    one verified `stores move` per store; a store's writes are refused only while its own
    data is copied and switched.

    A store no server may take is reported with what it requires; the others still move.
    Running the drain again after an interruption resumes it: the moves left half-way are
    rolled back and redone, stores already moved are skipped. Exit 1 when any store did not
    move. Follow a queued drain with `tenantry ops show ID` (its moves: `ops list --parent`).
    """
    server_drain.check_concurrency(concurrency)
    settings = load_settings()
    with open_platform(settings) as platform:
        if dry_run:
            plan = server_drain.plan(platform, name)
            if json_output:
                emit_json(
                    {
                        "server": name,
                        "moves": [m.document() for m in plan.moves],
                        "cannot_move": [u.document() for u in plan.unplaced],
                    }
                )
            else:
                console.print(_plan_table(f"drain of {name} (dry run)", plan.moves, plan.unplaced))
            if plan.unplaced:
                raise typer.Exit(EXIT_FAILED)
            return
        drainer = ServerDrain(platform, cli_actor())
        started = drainer.start(name, concurrency=concurrency)
        assert started.operation_id is not None
        if queue:
            dispatcher = open_dispatcher(settings)
            try:
                dispatcher.enqueue_drain(started.operation_id, concurrency)
            finally:
                dispatcher.close()
            doc = {
                "operation_id": str(started.operation_id),
                "server": name,
                "resumed": started.resumed,
                "moves": [m.document() for m in started.plan.moves],
                "cannot_move": [u.document() for u in started.plan.unplaced],
            }
            if json_output:
                emit_json(doc)
            else:
                console.print(
                    f"drain {started.operation_id} of server {escape(name)} handed to "
                    f"{dispatcher.where}: {len(started.plan.moves)} store(s) to move; follow it "
                    f"with `tenantry ops show {started.operation_id}`"
                )
            return
        total = len(started.plan.moves) + len(started.plan.unplaced)
        board = _Board(total, 0, disabled=json_output)
        drainer.on_progress, drainer.on_done = board.step, board.done
        if not json_output and started.resumed:
            err_console.print(f"resuming drain {started.operation_id} of server {escape(name)}")
        with board.shown():
            report = drainer.run(started.operation_id, concurrency=concurrency)
    if json_output:
        emit_json(report.document())
    else:
        console.print(
            _outcome_table(
                f"drain {report.operation_id} of {name}: {report.status}",
                report.outcomes,
                report.unplaced,
            )
        )
    if not report.complete:
        raise typer.Exit(EXIT_FAILED)


@reports_errors
def rebalance(
    max_skew: str = typer.Option(
        "1",
        "--max-skew",
        help="Allowed difference in store count between the fullest and the emptiest "
        "accepting server: a count (2) or a share of the average per server (10%).",
    ),
    concurrency: int = typer.Option(1, "--concurrency", "-c", help=CONCURRENCY_HELP),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan; change nothing."),
    queue: bool = typer.Option(
        False, "--queue", help="Hand the rebalance to the workers and print its operation id."
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """Move the fewest stores that bring the accepting servers within --max-skew stores of
    each other (residency and capacity respected), one verified `stores move` per store.

    Prints the plan, then runs it as one `rebalance` operation (its moves: `ops list
    --parent ID`), here or, with --queue, on a worker. Exit 1 when a move failed or
    residency and capacity leave the servers outside the skew. An interrupted rebalance is
    resumed by running it again (or by a worker, as many moves at once as it was asked):
    moves left half-way are rolled back, and it plans from where the stores are now.
    """
    server_drain.check_concurrency(concurrency)
    settings = load_settings()
    with open_platform(settings) as platform:
        plan = server_rebalance.plan(platform, max_skew)
        header = {
            "allowed_skew": plan.allowed_skew,
            "skew_before": plan.skew_before,
            "skew_after": plan.skew_after,
            "reached": plan.reached,
            "moves": [m.document() for m in plan.moves],
        }
        if not json_output:
            console.print(
                f"skew {plan.skew_before} (allowed {plan.allowed_skew}): "
                f"{len(plan.moves)} move(s) bring it to {plan.skew_after}"
            )
            if plan.moves:
                console.print(_plan_table("rebalance plan", plan.moves, []))
        outcomes: list[StoreOutcome] = []
        operation_id = None
        if not dry_run:
            runner = Rebalance(platform, cli_actor())
            started = runner.start(max_skew, concurrency=concurrency)
            operation_id = started.operation_id
            if operation_id is not None and queue:
                dispatcher = open_dispatcher(settings)
                try:
                    dispatcher.enqueue_rebalance(operation_id, concurrency)
                finally:
                    dispatcher.close()
                if json_output:
                    emit_json({**header, "dry_run": False, "operation_id": str(operation_id)})
                else:
                    console.print(
                        f"rebalance {operation_id} handed to {dispatcher.where}: "
                        f"{len(plan.moves)} store(s) to move; follow it with "
                        f"`tenantry ops show {operation_id}`"
                    )
                return
            if operation_id is not None:
                if not json_output and started.resumed:
                    err_console.print(f"resuming rebalance {operation_id}")
                board = _Board(len(started.plan.moves), 0, disabled=json_output)
                runner.on_progress, runner.on_done = board.step, board.done
                with board.shown():
                    report = runner.run(operation_id, concurrency=concurrency)
                outcomes, plan = report.outcomes, report.plan
    failed = any(o.status == FAILED for o in outcomes)
    if json_output:
        emit_json(
            {
                **header,
                "dry_run": dry_run,
                "operation_id": str(operation_id) if operation_id else None,
                "stores": [o.document() for o in outcomes],
            }
        )
    elif outcomes:
        console.print(_outcome_table(f"rebalance {operation_id}", outcomes, []))
    if not plan.reached:
        err_console.print(
            "[yellow]![/] residency or capacity leaves the servers outside the allowed skew "
            f"({plan.skew_after} > {plan.allowed_skew})"
        )
    if failed or not plan.reached:
        raise typer.Exit(EXIT_FAILED)
