"""Auditing a refused or failed admin request: the entry is written in a master transaction
of its own after the request's own is rolled back (on SQLite a request's writing
transaction holds the write lock the entry needs)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session

from tenantry.operations import audited
from tenantry.runtime import Platform
from tenantry.services.permissions import Principal


@contextmanager
def audit_failures(
    master: Session,
    platform: Platform,
    key: Principal,
    action: str,
    target_type: str,
    target_id: str | None = None,
) -> Iterator[None]:
    """Record a failure of the ``with`` body by ``key`` (re-raised); its success is
    recorded by the service, in the request's transaction."""
    try:
        yield
    except Exception as exc:
        master.rollback()
        audited.record_failure(
            platform.writer_sessions,
            exc,
            actor=key.actor,
            action=action,
            target_type=target_type,
            target_id=target_id,
        )
        raise
