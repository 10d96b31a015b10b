"""Recovering rows from one of a store's backups, as ``tenantry recover rows`` does: the
backup is restored into a scratch database and the table's rows the live database lacks (by
primary key) are listed as INSERT statements for review; putting them back inserts them all in
one transaction, once the table's name is typed to confirm. Rows in both are never touched."""

from __future__ import annotations

import io

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from tenantry.api.deps import PlatformDep
from tenantry.backup.storage import storage_for
from tenantry.console.auth import FormDep, WriterDep
from tenantry.console.forms import FormError, form_error
from tenantry.console.templating import render
from tenantry.errors import InvalidInput, NotFound, TenantryError
from tenantry.operations.recover_rows import recover_rows
from tenantry.services.backups.recovery import RowRecovery
from tenantry.services.backups.recovery_output import write_rows
from tenantry.services.backups.verification import get_backup
from tenantry.services.permissions import ensure_may_write

router = APIRouter(prefix="/console", include_in_schema=False)

#: The preview shows at most this many characters of the INSERT statements.
PREVIEW_CHARS = 20_000


@router.post("/stores/{slug}/backups/{backup_id}/recover", response_class=HTMLResponse)
def recover(
    slug: str,
    backup_id: str,
    request: Request,
    form: FormDep,
    user: WriterDep,
    platform: PlatformDep,
) -> HTMLResponse:
    """Without ``table``: the form. With it: the missing rows found (``apply`` absent), or
    put back (``apply`` on, the table's name typed in ``confirm``)."""
    with platform.sessions() as session:
        backup = get_backup(session, backup_id[:64])
        if backup.slug != slug:
            raise NotFound(f"store {slug!r} has no backup {backup_id!r}.", "Pick one on its page.")
        full_id = str(backup.id)
    table = (form.get("table") or "").strip()
    where = (form.get("where") or "").strip() or None
    context: dict[str, object] = {"slug": slug, "backup_id": full_id, "table": table}
    context["where"] = where or ""
    if not table:
        return render(request, "recover.html", context)
    applying = form.get("apply") == "on"
    error: FormError | None = None
    try:
        if applying:
            ensure_may_write("put rows back")
            if (form.get("confirm") or "").strip() != table:
                raise InvalidInput(
                    f"type the table's name {table!r} to confirm inserting the missing rows.",
                    "Type it exactly, then press the button again.",
                )
        recovery, applied = recover_rows(
            platform.sessions,
            platform.box,
            platform.settings,
            storage_for(platform.settings),
            full_id,
            table,
            where=where,
            apply=applying,
            actor=user.principal.actor,
        )
    except TenantryError as exc:
        error = form_error("recover", exc)
        return render(request, "recover.html", {**context, "error": error})
    context.update(recovery=recovery, applied=applied, preview=_preview(recovery))
    return render(request, "recover.html", context)


def _preview(recovery: RowRecovery) -> str:
    """The missing rows as INSERT statements (cut to :data:`PREVIEW_CHARS`)."""
    out = io.StringIO()
    write_rows(recovery, out, "sql")
    text = out.getvalue()
    return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS] + "\n-- (cut)"
