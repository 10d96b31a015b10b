"""Draining and rebalancing database servers over HTTP (admin keys only), and the moves of
stores' databases.

``POST /database-servers/{name}/drain`` marks the server not accepting, records the drain and
hands it to the workers (202); ``GET /database-servers/{name}/drain`` is its progress with one
``move`` operation per store; ``POST /database-servers/rebalance`` records a rebalance and hands
it to the workers (202; its progress is ``GET /operations/{id}``, its moves ``GET
/operations?parent=…``); ``GET /moves`` lists moves with what became of their sources.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel, Field, Strict
from sqlalchemy import select

from tenantry.api.audit_failures import audit_failures
from tenantry.api.deps import AdminDep, DispatcherDep, MasterDep, MasterReadDep, PlatformDep
from tenantry.api.fields import RequestModel, StrictBool
from tenantry.api.openapi import raises
from tenantry.api.routes.operations import OperationOut, operation_out
from tenantry.db.master.models import Operation
from tenantry.errors import NotFound
from tenantry.operations import server_drain, server_rebalance
from tenantry.operations.server_drain import MAX_CONCURRENCY, ServerDrain
from tenantry.operations.server_rebalance import Rebalance
from tenantry.services import servers, stores
from tenantry.services.move_history import MAX_LIMIT, list_moves, move_row
from tenantry.services.rebalance_plan import RebalancePlan

router = APIRouter(tags=["database servers"])


class DrainRequest(BaseModel):
    """How to drain: how many stores move at once; ``dry_run`` only plans."""

    concurrency: int = Field(1, ge=1, le=MAX_CONCURRENCY)
    dry_run: bool = False


class DrainAccepted(BaseModel):
    """A drain handed to the workers (or, with ``dry_run``, only its plan)."""

    operation_id: uuid.UUID | None
    status_url: str | None
    resumed: bool = Field(description="An unfinished drain of the server was found and resumed.")
    moves: list[dict[str, str]] = Field(description="Each store with the server it goes to.")
    cannot_move: list[dict[str, Any]] = Field(
        description="Stores no server may take, with the requirement they need."
    )


class RebalanceRequest(RequestModel):
    """How to rebalance: the allowed skew, how many stores move at once; ``dry_run`` only
    plans."""

    max_skew: str = Field(
        "1",
        max_length=16,
        pattern=r"^\s*\d{1,6}\s*%?\s*$",
        description="Allowed difference in store count between the fullest and the emptiest "
        "accepting server: a count (2) or a share of the average per server (10%).",
    )
    concurrency: Annotated[int, Strict()] = Field(1, ge=1, le=MAX_CONCURRENCY)
    dry_run: StrictBool = False


class RebalanceAccepted(BaseModel):
    """A rebalance handed to the workers, or (dry run, or nothing to move) only its plan."""

    operation_id: uuid.UUID | None = Field(
        description="Null for a dry run, or when the servers are already within the skew."
    )
    status_url: str | None
    resumed: bool = Field(description="An unfinished rebalance was found and resumed.")
    allowed_skew: int
    skew_before: int
    skew_after: int
    reached: bool = Field(description="The plan brings the servers within the skew.")
    moves: list[dict[str, str]] = Field(description="Each store with the server it goes to.")


class DrainOut(BaseModel):
    """A server's latest drain and its per-store move operations."""

    operation: OperationOut
    moves: list[OperationOut]


class MoveOut(BaseModel):
    """One move: store, from, to, status, when, and what became of the source it kept."""

    id: str
    store: str | None
    store_id: str | None
    from_: str = Field(alias="from")
    to: str
    to_server: str
    status: str
    error: str | None
    parent_id: str | None
    started_at: datetime | None
    finished_at: datetime | None
    keep_source_until: datetime | None
    source: str = Field(description="kept, dropped, gone (with its store), not_ours, or -.")
    source_dropped_at: str | None


@router.post(
    "/database-servers/{name}/drain",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DrainAccepted,
)
@raises(404, 409)  # an unknown server; a drain another process runs
def drain_server(
    name: str,
    body: DrainRequest,
    master: MasterReadDep,
    key: AdminDep,
    platform: PlatformDep,
    dispatcher: DispatcherDep,
    response: Response,
) -> DrainAccepted:
    """Move every store off a server: it stops accepting new stores at once, then a worker
    moves each store to the server placement picks (residency and capacity respected), one
    verified move operation per store. Poll ``status_url`` (or ``GET
    /database-servers/{name}/drain``). Stores no server may take are listed and stay."""
    servers.get_server(master, name)  # an unknown server is a 404 before anything is done
    master.rollback()  # the drain is recorded in a transaction of its own
    if body.dry_run:
        plan = server_drain.plan(platform, name)
        return DrainAccepted(
            operation_id=None,
            status_url=None,
            resumed=False,
            moves=[m.document() for m in plan.moves],
            cannot_move=[u.document() for u in plan.unplaced],
        )
    with audit_failures(master, platform, key, "server.drain", "database_server", name):
        started = ServerDrain(platform, key.actor).start(name, concurrency=body.concurrency)
    assert started.operation_id is not None
    dispatcher.enqueue_drain(started.operation_id, body.concurrency)
    url = f"/database-servers/{name}/drain"
    response.headers["Location"] = url
    return DrainAccepted(
        operation_id=started.operation_id,
        status_url=url,
        resumed=started.resumed,
        moves=[m.document() for m in started.plan.moves],
        cannot_move=[u.document() for u in started.plan.unplaced],
    )


@router.post(
    "/database-servers/rebalance",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RebalanceAccepted,
    responses={
        200: {
            "model": RebalanceAccepted,
            "description": "A dry run, or servers already within the skew: the plan only.",
        }
    },
)
@raises(409, 422)  # a rebalance another process runs; a skew that is not a count or N%
def rebalance_servers(
    body: RebalanceRequest,
    master: MasterReadDep,
    key: AdminDep,
    platform: PlatformDep,
    dispatcher: DispatcherDep,
    response: Response,
) -> RebalanceAccepted:
    """Move the fewest stores that bring the accepting servers within ``max_skew`` stores of
    each other (residency and capacity respected), one verified move operation per store,
    run by a worker as one ``rebalance`` operation (202; poll ``status_url``). A dry run, or
    servers already within the skew, answers 200 with the plan and records nothing. An
    unfinished rebalance is resumed with this skew and concurrency."""
    master.rollback()  # the rebalance is recorded in a transaction of its own
    if body.dry_run:
        plan = server_rebalance.plan(platform, body.max_skew)
        response.status_code = status.HTTP_200_OK
        return _rebalance_out(None, plan, resumed=False)
    with audit_failures(master, platform, key, "server.rebalance", "database_server", "*"):
        started = Rebalance(platform, key.actor).start(body.max_skew, concurrency=body.concurrency)
    if started.operation_id is None:
        response.status_code = status.HTTP_200_OK
        return _rebalance_out(None, started.plan, resumed=False)
    dispatcher.enqueue_rebalance(started.operation_id, body.concurrency)
    out = _rebalance_out(started.operation_id, started.plan, resumed=started.resumed)
    response.headers["Location"] = out.status_url or ""
    return out


def _rebalance_out(
    operation_id: uuid.UUID | None, plan: RebalancePlan, *, resumed: bool
) -> RebalanceAccepted:
    return RebalanceAccepted(
        operation_id=operation_id,
        status_url=f"/operations/{operation_id}" if operation_id else None,
        resumed=resumed,
        allowed_skew=plan.allowed_skew,
        skew_before=plan.skew_before,
        skew_after=plan.skew_after,
        reached=plan.reached,
        moves=[m.document() for m in plan.moves],
    )


@router.get("/database-servers/{name}/drain", response_model=DrainOut)
@raises(404)  # an unknown server, or one never drained
def show_drain(name: str, master: MasterDep, key: AdminDep) -> DrainOut:
    """The server's latest drain: its progress (stores moved of total) and each store's move
    operation (step, rows copied or verified, error)."""
    servers.get_server(master, name)
    found = server_drain.latest(master, name)
    if found is None:
        raise NotFound(f"server {name!r} was never drained.", "Start one with POST …/drain.")
    children = master.scalars(
        select(Operation).where(Operation.parent_id == found.id).order_by(Operation.created_at)
    )
    return DrainOut(operation=operation_out(found), moves=[operation_out(m) for m in children])


@router.get("/moves", response_model=list[MoveOut])
@raises(404)  # an unknown store
def get_moves(
    master: MasterDep,
    key: AdminDep,
    store: str | None = Query(None, description="Only this store's moves (slug or id)."),
    limit: int = Query(100, ge=1, le=MAX_LIMIT),
) -> list[MoveOut]:
    """Moves of stores' databases, newest first, with what became of each kept source."""
    store_id = stores.get_store(master, store).id if store else None
    return [
        MoveOut.model_validate(move_row(m))
        for m in list_moves(master, store_id=store_id, limit=limit)
    ]
