"""The billing database's own audit log (billing never writes to master).

Subscription and invoice changes are recorded here, not in master: the entry commits in the
same billing transaction as the change it describes (master is another database, so an
entry there could outlive a change that rolled back, or be lost when master is down), and it
is scoped by app like everything else in billing. ``tenantry audit list`` reads both logs.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from tenantry.db.billing.models import BillingAuditLog
from tenantry.services.audit import Outcome


def record(
    session: Session,
    *,
    app_id: str,
    actor: str,
    action: str,
    target_type: str,
    target_id: str | None = None,
    details: dict[str, Any] | None = None,
    outcome: Outcome = Outcome.SUCCEEDED,
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
            outcome=outcome.value,
        )
    )
