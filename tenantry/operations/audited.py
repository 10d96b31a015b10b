"""Audited actions whose entry needs a transaction of its own: a failed action's entry
must stay when the action's own work is rolled back, and an action whose work is not in
master (a migration, a backup, a fleet run) has no master transaction to share. Services
record with :func:`tenantry.services.audit.record` in their caller's transaction; these
helpers open their own, so they live here (services never own a transaction)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from sqlalchemy.orm import Session

from tenantry.services import audit
from tenantry.services.billing import audit as billing_audit

Sessions = Callable[[], AbstractContextManager[Session]] | Any

log = logging.getLogger(__name__)


def without_masking(write: Callable[[], object], action: str) -> None:
    """Write a failed action's entry; if that fails too (master unreachable or locked, the
    very trouble the action met), log it and let the action's own error be the one raised:
    an audit entry must never replace the error the user has to act on."""
    try:
        write()
    except Exception as exc:
        log.warning("the failure of %s could not be audited (%s)", action, type(exc).__name__)


@contextmanager
def attempt(
    sessions: Sessions,
    *,
    actor: str,
    action: str,
    target_type: str,
    target_id: str | None = None,
    store_id: uuid.UUID | None = None,
    details: dict[str, Any] | None = None,
) -> Iterator[audit.Attempt]:
    """Audit the action run in the ``with`` body, in its own master transaction.

    The entry is written after the body ends: ``succeeded``, or ``failed``/``refused`` with
    the error's type when it raised (the error is re-raised). Being its own transaction, the
    failed entry stays when the action's own work is rolled back. For actions whose work
    is not in master (migrations, backups, fleet runs); an action whose work is a master
    transaction records its success in that transaction with
    :func:`~tenantry.services.audit.record`.
    """
    with failures(
        sessions,
        actor=actor,
        action=action,
        target_type=target_type,
        target_id=target_id,
        store_id=store_id,
        details=details,
    ) as run:
        yield run
    _write(sessions, run, audit.Outcome.SUCCEEDED, {})


@contextmanager
def failures(
    sessions: Sessions,
    *,
    actor: str,
    action: str,
    target_type: str,
    target_id: str | None = None,
    store_id: uuid.UUID | None = None,
    details: dict[str, Any] | None = None,
) -> Iterator[audit.Attempt]:
    """Record only a failure of the ``with`` body (in its own transaction, re-raising): for
    actions whose success is recorded with :func:`~tenantry.services.audit.record` in their
    own transaction."""
    run = audit.Attempt(actor, action, target_type, target_id, store_id, dict(details or {}))
    try:
        yield run
    except BaseException as exc:
        # The body may have named the target or added details since: record what it ended with.
        record_failure(
            sessions,
            exc,
            actor=run.actor,
            action=run.action,
            target_type=run.target_type,
            target_id=run.target_id,
            store_id=run.store_id,
            details=run.details,
        )
        raise


@contextmanager
def not_audited(sessions: Any, **_entry: Any) -> Iterator[audit.Attempt]:
    """What :func:`attempt` yields, recording nothing (an action audited elsewhere)."""
    yield audit.Attempt(actor="", action="", target_type="")


def record_failure(
    sessions: Sessions,
    exc: BaseException,
    *,
    actor: str,
    action: str,
    target_type: str,
    target_id: str | None = None,
    store_id: uuid.UUID | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Record that an action failed (or was refused), in a transaction of its own."""
    run = audit.Attempt(actor, action, target_type, target_id, store_id, dict(details or {}))
    outcome = audit.outcome_of(exc) if isinstance(exc, Exception) else audit.Outcome.FAILED
    error = {"error": type(exc).__name__}
    without_masking(lambda: _write(sessions, run, outcome, error), action)


def _write(
    sessions: Any, run: audit.Attempt, outcome: audit.Outcome, extra: dict[str, Any]
) -> None:
    """One entry for ``run`` in a transaction of its own (``sessions`` a sessionmaker)."""
    # Only the error's type: its message may quote a URL or a row (never in the audit log).
    with sessions() as session, session.begin():
        audit.record(
            session,
            actor=run.actor,
            action=run.action,
            target_type=run.target_type,
            target_id=run.target_id,
            store_id=run.store_id,
            details={**run.details, **extra},
            outcome=outcome,
        )


@contextmanager
def billing_failures(
    sessions: Sessions,
    *,
    app_id: str,
    actor: str,
    action: str,
    target_type: str,
    target_id: str | None = None,
    release: Callable[[], object] | None = None,
) -> Iterator[audit.Attempt]:
    """Record a failure of the ``with`` body in a billing transaction of its own (the
    action's own is rolled back), re-raising it; its success is recorded by the body.
    ``release`` runs first: the rollback of the action's own session (on SQLite it holds the
    write lock the entry needs)."""
    run = audit.Attempt(actor, action, target_type, target_id)
    try:
        yield run
    except Exception as exc:
        if release is not None:
            release()
        error, outcome = type(exc).__name__, audit.outcome_of(exc)

        def write() -> None:
            with sessions() as session, session.begin():
                billing_audit.record(
                    session,
                    app_id=app_id,
                    actor=actor,
                    action=action,
                    target_type=target_type,
                    target_id=run.target_id,
                    details={**run.details, "error": error},
                    outcome=outcome,
                )

        without_masking(write, action)
        raise
