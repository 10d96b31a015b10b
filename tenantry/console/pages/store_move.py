"""Moving a store's database to another registered server (or, with a shared database named,
into its own schema there), as ``tenantry stores move`` does: confirmed by typing the store's
slug; its writes are refused while it moves, and a failure rolls it back (the store stays
where it was)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from tenantry.api.deps import PlatformDep
from tenantry.console.auth import FormDep, WriterDep
from tenantry.console.forms import FormError
from tenantry.console.pages.store_detail import confirmed, detail_page, show_again
from tenantry.errors import InvalidInput, TenantryError
from tenantry.operations.move_destination import MoveDestination
from tenantry.operations.move_store import StoreMover
from tenantry.services.permissions import ensure_may_write

router = APIRouter(prefix="/console", include_in_schema=False)


@router.post("/stores/{slug}/move", response_class=HTMLResponse)
def move(
    slug: str, request: Request, form: FormDep, user: WriterDep, platform: PlatformDep
) -> HTMLResponse:
    """Move the store's database to the chosen server; the page then says how it ended."""
    server = (form.get("server") or "").strip()
    shared = (form.get("shared") or "").strip()  # into the store's schema of that database
    try:
        ensure_may_write("move a store")
        if not server:
            raise InvalidInput("choose the server to move the store to.", "Pick one in the list.")
        confirmed(form, slug, "move")
        mover = StoreMover(
            platform.sessions,
            platform.box,
            platform.settings,
            platform.tenant_spec,
            actor=user.principal.actor,
            release_source=platform.router.evict,
        )
        destination = MoveDestination.parse(
            None if shared else server, f"{server}/{shared}" if shared else None, False
        )
        moved = mover.move_to(slug, destination)
    except TenantryError as exc:
        return show_again(request, platform, slug, "move", exc)
    if moved.store_id is not None:
        platform.router.evict(moved.store_id)  # its next request connects to the new home
    with platform.sessions() as master:
        if moved.status != "completed":
            # Rolled back: the store is still served from where it was.
            rolled = FormError(
                "move",
                f"the move was rolled back: {moved.error or 'it did not complete'}.",
                "The store is still served from its old database; fix the cause and move again.",
                409,
            )
            return detail_page(request, platform, master, slug, error=rolled)
        return detail_page(request, platform, master, slug, moved_to=server)
