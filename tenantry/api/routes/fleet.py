"""The fleet over HTTP (admin keys only): ``GET /fleet/status``, what ``tenantry fleet status``
prints, from master alone (no tenant database is opened)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from tenantry.api.deps import AdminDep, MasterDep, PlatformDep
from tenantry.api.openapi import raises
from tenantry.services.fleet_status import CURSOR_MAX, DEFAULT_LIMIT, MAX_LIMIT, fleet_status

router = APIRouter(prefix="/fleet", tags=["fleet"])


class FailedTenant(BaseModel):
    """A store whose latest migration failed or was refused."""

    slug: str
    status: str
    error: str | None
    at: datetime


class FleetStatusOut(BaseModel):
    """Whole counts, and one page of the stores needing attention (slug order)."""

    head: str | None = Field(description="The revision this code's tenant schema is at.")
    total: int = Field(description="Active tenant databases.")
    per_revision: dict[str, int]
    lagging_total: int = Field(description="Every active store not at head.")
    failed_total: int = Field(description="Every active store whose last migration failed.")
    lagging: list[str] = Field(description="This page's stores not at head.")
    failed: list[FailedTenant] = Field(description="This page's stores whose migration failed.")
    last_run: dict[str, Any] | None
    limit: int
    next_cursor: str | None = Field(
        description="Pass as ?cursor= for the next page; null on the last page."
    )


@router.get("/status", response_model=FleetStatusOut)
@raises(422)  # a limit out of range, a cursor no page returned
def get_fleet_status(
    master: MasterDep,
    key: AdminDep,
    platform: PlatformDep,
    limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT),
    cursor: str | None = Query(None, min_length=1, max_length=CURSOR_MAX),
) -> FleetStatusOut:
    """Tenants per revision, lagging and failed counts and the last run; the lagging or
    failed stores a page at a time after ``cursor`` (the previous page's ``next_cursor``)."""
    st = fleet_status(master, platform.tenant_spec, limit=limit, cursor=cursor)
    return FleetStatusOut(
        head=st.head,
        total=st.total,
        per_revision=st.per_revision,
        lagging_total=st.lagging_total,
        failed_total=st.failed_total,
        lagging=st.lagging,
        failed=[FailedTenant.model_validate(f) for f in st.failed],
        last_run=st.last_run,
        limit=st.limit,
        next_cursor=st.next_cursor,
    )
