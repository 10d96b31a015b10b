"""The backup catalog in master: listing backups and describing one, for every adapter."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tenantry.backup.storage import Storage
from tenantry.db.master.models import Backup
from tenantry.services.backups.targets import parse_scope, scope_of


def list_backups(
    session: Session,
    *,
    scope: str | None = None,
    status: str | None = None,
    limit: int = 50,
) -> list[Backup]:
    """Backups, newest first (only ``scope``'s or ``status``'s when given)."""
    query = select(Backup).order_by(Backup.started_at.desc()).limit(limit)
    if scope:
        role, slug = parse_scope(scope)
        query = query.where(Backup.role == role.value)
        if slug:
            query = query.where(Backup.slug == slug)
    if status:
        query = query.where(Backup.status == status)
    return list(session.scalars(query))


def set_pinned(session: Session, backup: Backup, pinned: bool) -> Backup:
    """Pin (never pruned) or unpin a backup."""
    backup.pinned = pinned
    return backup


def backup_document(backup: Backup, storage: Storage | None = None) -> dict[str, Any]:
    """A catalog entry as JSON: where the artifact is and what it holds, never a secret."""
    return {
        "id": str(backup.id),
        "scope": scope_of(backup),
        "status": backup.status,
        "role": backup.role,
        "store": backup.slug,
        "store_id": str(backup.store_id) if backup.store_id else None,
        "database": backup.database,
        "engine": backup.engine,
        "instance_id": backup.instance_id,
        "schema_revision": backup.schema_revision,
        "reason": backup.reason,
        "label": backup.label,
        "pinned": backup.pinned,
        "storage": backup.storage,
        "location": storage.location(backup.artifact_key) if storage else backup.artifact_key,
        "manifest": storage.location(backup.manifest_key) if storage else backup.manifest_key,
        "size_bytes": backup.size_bytes,
        "raw_bytes": backup.raw_bytes,
        "sha256": backup.sha256,
        "row_counts": backup.row_counts,
        "tool_version": backup.tool_version,
        "server_version": backup.server_version,
        "started_at": backup.started_at,
        "finished_at": backup.finished_at,
        "error": backup.error,
        "verified_at": backup.verified_at,
        "verify_passed": backup.verify_passed,
        "verify_duration_ms": backup.verify_duration_ms,
        "verify_error": backup.verify_error,
        "verify_notes": backup.verify_notes,
        "created_by": backup.created_by,
    }


def short(backup_id: uuid.UUID) -> str:
    """The id as ``backup list`` shows it (a prefix every command accepts)."""
    return str(backup_id)[:8]
