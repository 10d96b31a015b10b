"""Moving one store's database over HTTP (admin keys only), with the choices ``tenantry
stores move`` takes: ``POST /stores/{ref}/move`` with ``to_server`` (another server, or
``sqlite``), ``to_shared`` (``SERVER[/DB]``: its own schema of a shared PostgreSQL database) or
``to_own_database`` (a shared-schema store into a database of its own, on ``to_server`` or
where placement picks). The move runs to its end before the answer: ``200`` with the move
once switched, ``409`` when it was refused or rolled back (the store stays where it was)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from tenantry.api.audit_failures import audit_failures
from tenantry.api.deps import AdminDep, MasterReadDep, PlatformDep, visible_store
from tenantry.errors import Conflict
from tenantry.operations.move_destination import MoveDestination
from tenantry.operations.move_store import StoreMover
from tenantry.services.move_progress import move_document

router = APIRouter(tags=["stores"])


class MoveRequest(BaseModel):
    """Where the store goes: exactly one of ``to_server`` and ``to_shared``, or
    ``to_own_database`` (with ``to_server`` or alone)."""

    to_server: str | None = Field(
        None, max_length=63, description="A registered server's name, or `sqlite`."
    )
    to_shared: str | None = Field(
        None, max_length=130, description="SERVER[/DATABASE]: the store's schema there."
    )
    to_own_database: bool = Field(
        False, description="A shared-schema store into a database of its own."
    )


class StoreMoveOut(BaseModel):
    """A completed move: where from and to (no secret), rows copied and verified."""

    id: str
    store_id: str
    slug: str | None
    from_config_id: str
    to_config_id: str | None
    to_server: str
    status: str
    step: str | None
    progress: int | None
    details: dict[str, Any]
    error: str | None
    keep_source_until: datetime | None
    started_at: datetime | None
    finished_at: datetime | None


@router.post("/stores/{store_ref}/move", response_model=StoreMoveOut, responses={502: {}})
def move_store(
    store_ref: str, body: MoveRequest, master: MasterReadDep, key: AdminDep, platform: PlatformDep
) -> StoreMoveOut:
    """Move the store's database (copied, verified, switched; its writes answered 503 only
    while it moves); 409 when refused or rolled back, 422 for contradictory choices."""
    with audit_failures(master, platform, key, "store.move", "store", store_ref):
        destination = MoveDestination.parse(body.to_server, body.to_shared, body.to_own_database)
        store_id = visible_store(master, key, store_ref).id
        master.rollback()  # end the check's transaction: the move opens its own
        mover = StoreMover(
            platform.sessions,
            platform.box,
            platform.settings,
            platform.tenant_spec,
            actor=key.actor,
            release_source=platform.router.evict,
        )
        moved = mover.move_to(store_id, destination)
        platform.router.evict(store_id)  # this process's next request connects anew
        if moved.status != "completed":
            raise Conflict(
                f"the move {moved.id} was rolled back: {moved.error or 'it did not complete'}",
                "The store is still served from its old database; fix the cause and move "
                "it again (`GET /moves?store=…` lists the move).",
            )
    return StoreMoveOut.model_validate(move_document(moved))
