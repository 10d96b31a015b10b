"""The JSON manifest stored beside each artifact: what the backup holds, never a secret."""

from __future__ import annotations

import json
from typing import Any

from tenantry.db.master.models import Backup

MANIFEST_FORMAT = 1


def manifest_of(backup: Backup, *, exact_counts: bool, level: int) -> dict[str, Any]:
    """The manifest of a stored backup (from its catalog row)."""
    return {
        "format": MANIFEST_FORMAT,
        "id": str(backup.id),
        "role": backup.role,
        "store": {"id": str(backup.store_id), "slug": backup.slug} if backup.store_id else None,
        "database": backup.database,
        "engine": backup.engine,
        "instance_id": backup.instance_id,
        "schema_revision": backup.schema_revision,
        "reason": backup.reason,
        "label": backup.label,
        "server_version": backup.server_version,
        "tool_version": backup.tool_version,
        "compression": {"codec": "zstd", "level": level},
        "artifact": backup.artifact_key,
        "size_bytes": backup.size_bytes,
        "raw_bytes": backup.raw_bytes,
        "sha256": backup.sha256,
        "started_at": backup.started_at.isoformat(),
        "finished_at": backup.finished_at.isoformat() if backup.finished_at else None,
        "row_counts": backup.row_counts,
        "row_counts_exact": exact_counts,
    }


def encode(manifest: dict[str, Any]) -> bytes:
    """The manifest as stored: indented UTF-8 JSON."""
    return (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
