"""The audit log over HTTP: ``GET /audit``, admin keys only, newest first, a page at a time.

Master's log and billing's are read as one, as ``tenantry audit list`` does; the next page is
asked for with the ``next_cursor`` of the last (a keyset cursor: stable while entries are
added, unlike an offset).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from tenantry.api.deps import AdminDep, MasterDep, PlatformDep
from tenantry.api.openapi import raises
from tenantry.services import audit_query
from tenantry.services.audit import Outcome

router = APIRouter(prefix="/audit", tags=["audit"])

#: A duration ago (7d, 12h, 30m, 2w, 90s) or an ISO 8601 date or time.
WHEN_PATTERN = (
    r"^(\d{1,5}[smhdw]|\d{4}-\d{2}-\d{2}"
    r"([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})?)?)$"
)


class AuditEntryOut(BaseModel):
    """One audit entry: when, who, what, to what, and how it ended."""

    id: uuid.UUID
    created_at: datetime
    log: str = Field(description="master or billing: the database whose log holds it.")
    actor: str = Field(description="cli:<os user>, key:<prefix>, user:<email>, worker…")
    action: str
    outcome: Outcome
    target_type: str
    target_id: str | None
    store_id: uuid.UUID | None
    app_id: str | None
    details: dict[str, Any]


class AuditPage(BaseModel):
    """A page of entries, newest first; ``next_cursor`` is null on the last page."""

    items: list[AuditEntryOut]
    next_cursor: str | None


@router.get("", response_model=AuditPage)
@raises(422)
def list_audit(
    master: MasterDep,
    _key: AdminDep,
    platform: PlatformDep,
    since: str | None = Query(
        None,
        max_length=40,
        pattern=WHEN_PATTERN,
        description="From this time: 7d, 12h, 30m ago, or ISO 8601.",
    ),
    until: str | None = Query(
        None, max_length=40, pattern=WHEN_PATTERN, description="Before this time (same forms)."
    ),
    actor: str | None = Query(
        None, max_length=128, description="cli, key, user, app, worker, scheduler, or one actor."
    ),
    action: str | None = Query(
        None, max_length=64, description="One action (store.suspend) or a family (store.*)."
    ),
    store: str | None = Query(
        None,
        max_length=63,
        pattern=r"^[a-z0-9][a-z0-9-]*$",
        description="About this store (slug or id).",
    ),
    outcome: Outcome | None = Query(None, description="Only entries that ended this way."),
    limit: int = Query(50, ge=1, le=1000),
    cursor: str | None = Query(
        None,
        max_length=200,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="next_cursor of the last page.",
    ),
) -> AuditPage:
    """Audit entries, newest first, filtered; admin keys only."""
    store_id, slug = audit_query.store_filter(master, store) if store else (None, None)
    flt = audit_query.AuditFilter(
        since=audit_query.parse_when(since, option="since") if since else None,
        until=audit_query.parse_when(until, option="until") if until else None,
        actor=actor or None,
        action=action or None,
        store_id=store_id,
        store_slug=slug,
        outcome=outcome,
    )
    with platform.billing_sessions() as billing:
        docs, following = audit_query.page(master, billing, flt, limit=limit, cursor=cursor)
    return AuditPage(items=[AuditEntryOut(**d) for d in docs], next_cursor=following)
