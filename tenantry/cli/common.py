"""Helpers shared by the commands that work through the platform (master sessions, keys)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import Any

from tenantry.db.master.models import ProvisioningJob
from tenantry.operations import audited
from tenantry.runtime import Platform
from tenantry.services import audit
from tenantry.settings import Settings

#: Connection details never shown, even though config_data holds no password: URL query
#: parameters may carry credentials (sslpassword, tokens).
_HIDDEN_CONFIG_KEYS = frozenset({"password", "query"})


@contextmanager
def open_platform(settings: Settings) -> Iterator[Platform]:
    """The platform for ``settings`` (master checked at head), closed on exit."""
    platform = Platform.open(settings)
    try:
        yield platform
    finally:
        platform.close()


def audit_failures(
    platform: Platform, action: str, target_type: str, target_id: str | None = None
) -> AbstractContextManager[audit.Attempt]:
    """Record a failure (or refusal) of the CLI action in the ``with`` body as the CLI's
    user, in a transaction of its own; open the action's own transaction inside it."""
    return audited.failures(
        platform.writer_sessions,
        actor=audit.cli_actor(),
        action=action,
        target_type=target_type,
        target_id=target_id,
    )


def when(value: datetime | None) -> str:
    """A time for a table cell: ISO 8601 to the second, or ``-``."""
    return value.isoformat(timespec="seconds") if value is not None else "-"


def public_config(config_data: dict[str, Any]) -> dict[str, Any]:
    """A stored connection's config_data without anything that could be a secret."""
    return {k: v for k, v in config_data.items() if k not in _HIDDEN_CONFIG_KEYS}


def job_document(job: ProvisioningJob) -> dict[str, Any]:
    """A provisioning job as JSON: its state, never its target or sealed secret."""
    return {
        "id": str(job.id),
        "store_id": str(job.store_id),
        "mode": job.mode,
        "status": job.public_status,
        "step": job.step,
        "progress": job.progress,
        "message": job.message,
        "tables_created": job.tables_created,
        "total_tables": job.total_tables or 0,
        "error": job.error,
        "attempts": job.attempts,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
    }
