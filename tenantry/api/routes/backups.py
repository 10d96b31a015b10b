"""The backup catalog over HTTP (admin keys only): list, show, request a backup, protection."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response, status
from pydantic import BaseModel, Field

from tenantry.api.deps import AdminDep, DispatcherDep, MasterDep, PlatformDep
from tenantry.api.fields import BACKUP_SCOPE_PATTERN, RequestModel, StrictBool
from tenantry.backup.storage import storage_for
from tenantry.db.master.models import BackupStatus
from tenantry.operations import backup_request
from tenantry.services.backups import catalog, scheduling
from tenantry.services.backups.scheduling import STATUS_MAX
from tenantry.services.backups.verification import get_backup

router = APIRouter(prefix="/backups", tags=["backups"])


class BackupOut(BaseModel):
    """A catalog entry: what a backup holds and where its artifact is (never a secret)."""

    id: uuid.UUID
    scope: str
    status: str
    role: str
    store: str | None
    database: str
    engine: str
    instance_id: str | None
    schema_revision: str | None
    reason: str
    label: str | None
    pinned: bool
    storage: str
    location: str
    manifest: str
    size_bytes: int | None
    raw_bytes: int | None
    sha256: str | None
    row_counts: dict[str, int]
    started_at: datetime
    finished_at: datetime | None
    error: str | None
    verified_at: datetime | None
    verify_passed: bool | None
    verify_duration_ms: int | None
    verify_error: str | None
    verify_notes: str | None = None


class BackupRequest(RequestModel):
    """Which database to back up."""

    db: str = Field(pattern=BACKUP_SCOPE_PATTERN, description="master, billing or store:SLUG")
    label: str | None = Field(None, max_length=255)
    pin: StrictBool = False


class ProtectionOut(BaseModel):
    """One database's protection by its policy."""

    scope: str
    protected: bool
    last_good_id: uuid.UUID | None
    last_good_at: datetime | None
    last_attempt_status: str | None
    backup_due: bool
    verify_due: bool
    last_restore_ms: int | None
    rto_minutes: int
    rto_met: bool | None
    #: Why the database's backups cannot be restore-tested (then it is not protected).
    unverifiable: str | None = None


def _out(document: dict[str, Any]) -> BackupOut:
    return BackupOut.model_validate(document)


@router.get("", response_model=list[BackupOut])
def list_backups(
    master: MasterDep,
    key: AdminDep,
    platform: PlatformDep,
    db: str | None = Query(
        None, pattern=BACKUP_SCOPE_PATTERN, description="master, billing or store:SLUG"
    ),
    backup_status: BackupStatus | None = Query(None, alias="status"),
    limit: int = Query(50, ge=1, le=1000),
) -> list[BackupOut]:
    """The catalog, newest first."""
    storage = storage_for(platform.settings)
    found = catalog.list_backups(
        master, scope=db, status=backup_status.value if backup_status else None, limit=limit
    )
    return [_out(catalog.backup_document(b, storage)) for b in found]


@router.get("/status", response_model=list[ProtectionOut])
def protection(
    master: MasterDep,
    key: AdminDep,
    response: Response,
    limit: int = Query(STATUS_MAX, ge=1, le=STATUS_MAX, description="Stores per page."),
    cursor: str | None = Query(
        None,
        min_length=1,
        max_length=63,
        description="The previous page's X-Next-Cursor header (a store slug).",
    ),
) -> list[ProtectionOut]:
    """Each database's newest good backup, its age against the policy, and its RTO: master
    and billing, then ``limit`` stores in slug order; when more follow, the
    ``X-Next-Cursor`` header is the ``cursor`` of the next page."""
    scopes, following = scheduling.scope_page(master, limit=limit, after=cursor)
    if following is not None:
        response.headers["X-Next-Cursor"] = following
    return [
        ProtectionOut(
            scope=s.scope,
            protected=s.protected,
            last_good_id=s.last_good.id if s.last_good else None,
            last_good_at=s.last_good.started_at if s.last_good else None,
            last_attempt_status=s.last_attempt.status if s.last_attempt else None,
            backup_due=s.backup_due,
            verify_due=s.verify_due,
            last_restore_ms=s.last_verified.verify_duration_ms if s.last_verified else None,
            rto_minutes=s.policy.rto_minutes,
            rto_met=s.rto_met,
            unverifiable=s.unverifiable,
        )
        for s in scheduling.protection(master, scopes)
    ]


@router.get("/{backup_id}", response_model=BackupOut)
def show_backup(
    backup_id: Annotated[str, Path(max_length=64)],
    master: MasterDep,
    key: AdminDep,
    platform: PlatformDep,
) -> BackupOut:
    """One catalog entry (id or unique prefix); follow a requested backup's status here."""
    return _out(
        catalog.backup_document(get_backup(master, backup_id), storage_for(platform.settings))
    )


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=BackupOut)
def request_backup(
    body: BackupRequest,
    master: MasterDep,
    key: AdminDep,
    platform: PlatformDep,
    dispatcher: DispatcherDep,
) -> BackupOut:
    """Queue a backup for the workers; it starts ``queued``, then ``running``, ``stored``."""
    storage = storage_for(platform.settings)
    # The request is recorded in a transaction of its own (on SQLite this one would hold the
    # write lock it needs).
    master.rollback()
    backup = backup_request.request(
        platform,
        dispatcher,
        storage,
        body.db,
        label=body.label,
        pinned=body.pin,
        actor=key.actor,
    )
    return _out(catalog.backup_document(backup, storage))
