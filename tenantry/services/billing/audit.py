"""The billing database's own audit log (billing never writes to master).

Subscription and invoice changes are recorded here, not in master: the entry commits in the
same billing transaction as the change it describes (master is another database, so an
entry there could outlive a change that rolled back, or be lost when master is down), and it
is scoped by app like everything else in billing. ``tenantry audit list`` reads both logs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from sqlalchemy.orm import Session

from tenantry.db.billing.models import BillingAuditLog
from tenantry.services.audit import Attempt, Outcome, outcome_of


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


@contextmanager
def failures(
    sessions: Callable[[], AbstractContextManager[Session]],
    *,
    app_id: str,
    actor: str,
    action: str,
    target_type: str,
    target_id: str | None = None,
) -> Iterator[Attempt]:
    """Record a failure of the ``with`` body in a billing transaction of its own (the
    action's own is rolled back), re-raising it; its success is recorded by the body."""
    run = Attempt(actor, action, target_type, target_id)
    try:
        yield run
    except Exception as exc:
        with sessions() as session, session.begin():
            record(
                session,
                app_id=app_id,
                actor=actor,
                action=action,
                target_type=target_type,
                target_id=run.target_id,
                details={**run.details, "error": type(exc).__name__},
                outcome=outcome_of(exc),
            )
        raise
