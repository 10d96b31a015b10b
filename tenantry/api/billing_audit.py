"""Auditing the billing changes made through the API (subscriptions, invoices): the entry
goes to billing's own log, in the change's transaction when it succeeds and in one of its
own when it fails (see :mod:`tenantry.services.billing.audit` for why billing's log)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy.orm import Session

from tenantry.operations.audited import billing_failures
from tenantry.runtime import Platform
from tenantry.services.audit import Attempt
from tenantry.services.billing import audit as billing_audit
from tenantry.services.permissions import Principal


def audited(
    platform: Platform,
    session: Session,
    app: str,
    key: Principal,
    action: str,
    target: str,
    target_id: str = "",
) -> AbstractContextManager[Attempt]:
    """A billing change's audit by ``key``: its failure recorded in a transaction of its
    own once the request's ``session`` is rolled back; the body records its success with
    :func:`succeeded`."""
    return billing_failures(
        platform.billing_writer_sessions,
        app_id=app,
        actor=key.actor,
        action=action,
        target_type=target,
        target_id=target_id or None,
        release=session.rollback,
    )


def succeeded(session: Session, app: str, entry: Attempt, **more: Any) -> None:
    """Record ``entry``'s success in the change's own transaction ``session``."""
    billing_audit.record(
        session,
        app_id=app,
        actor=entry.actor,
        action=entry.action,
        target_type=entry.target_type,
        target_id=entry.target_id,
        details={**entry.details, **more},
    )
