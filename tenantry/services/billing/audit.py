"""The billing database's own audit log (billing never writes to master)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from tenantry.db.billing.models import BillingAuditLog


def record(
    session: Session,
    *,
    app_id: str,
    actor: str,
    action: str,
    target_type: str,
    target_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Add an audit entry (committed with the caller's transaction); never a secret."""
    session.add(
        BillingAuditLog(
            app_id=app_id,
            actor=actor,
            action=action,
            target_type=target_type,
            target_id=target_id,
            details=details or {},
        )
    )
