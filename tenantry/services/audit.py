"""The audit log in master: who did what to which thing, and how it ended.

Actors follow one convention, so ``audit list --actor`` can find them:

- ``cli:<os user>`` for every CLI command (:func:`cli_actor`),
- ``key:<prefix>`` for an API key (:func:`key_actor`),
- ``user:<email>`` for a platform user (:func:`user_actor`; the users' principal's ``.actor``),
- ``app:<app id>`` for a consumer app calling tenantry's Python billing library
  (:func:`app_actor`),
- ``worker`` and ``scheduler`` for work nobody asked for in person.
"""

from __future__ import annotations

import enum
import getpass
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, bindparam, insert
from sqlalchemy.orm import Session

from tenantry.db.master.models import AuditLog
from tenantry.errors import (
    Conflict,
    DestructiveChange,
    Forbidden,
    InvalidInput,
    NotFound,
    NotOwner,
    Unauthorized,
    UnidentifiedDatabase,
    WrongDatabase,
)

WORKER = "worker"
SCHEDULER = "scheduler"
#: The actor prefixes ``audit list --actor`` may be given bare (``--actor cli``).
ACTOR_KINDS = ("cli", "key", "user", "app", WORKER, SCHEDULER)


class Outcome(enum.StrEnum):
    """How an audited action ended."""

    SUCCEEDED = "succeeded"
    #: It started and went wrong (its own changes rolled back).
    FAILED = "failed"
    #: It was not allowed or not valid, so nothing was attempted.
    REFUSED = "refused"


#: Errors that mean the action was refused before anything was changed (the guards of
#: migrations included: the wrong database, a consumer app, a destructive revision).
_REFUSALS: tuple[type[Exception], ...] = (
    Forbidden,
    Unauthorized,
    InvalidInput,
    NotFound,
    Conflict,
    WrongDatabase,
    UnidentifiedDatabase,
    NotOwner,
    DestructiveChange,
)


def cli_actor() -> str:
    """The actor of a CLI command: ``cli:`` and the operating-system user running it."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        # No passwd entry and no LOGNAME/USER (some containers): still a CLI action.
        user = "unknown"
    return f"cli:{user}"


def key_actor(prefix: str) -> str:
    """The actor of a request made with the API key whose prefix is ``prefix``."""
    return f"key:{prefix}"


def user_actor(email: str) -> str:
    """The actor of a platform user (their principal's ``.actor``)."""
    return f"user:{email}"


def app_actor(app_id: str) -> str:
    """The actor of a consumer app using tenantry's Python library in its own process."""
    return f"app:{app_id}"


def outcome_of(exc: BaseException) -> Outcome:
    """``refused`` for an error that means nothing was attempted, else ``failed``."""
    return Outcome.REFUSED if isinstance(exc, _REFUSALS) else Outcome.FAILED


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    target_type: str,
    target_id: str | None = None,
    store_id: uuid.UUID | None = None,
    details: dict[str, Any] | None = None,
    actor_app: str | None = None,
    outcome: Outcome = Outcome.SUCCEEDED,
) -> AuditLog:
    """Add an audit entry to ``session`` (committed with the caller's transaction).

    ``details`` must never hold a secret.
    """
    entry = AuditLog(
        **_entry(actor, action, target_type, target_id, store_id, details, actor_app, outcome)
    )
    session.add(entry)
    return entry


def record_now(
    conn: Connection,
    *,
    actor: str,
    action: str,
    target_type: str,
    target_id: str | None = None,
    store_id: uuid.UUID | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """As :func:`record`, written at once on ``conn`` in its transaction, by one statement
    built once: for a path on every store's way that writes no ORM objects (the ORM's flush
    of one entry costs more than the statement)."""
    conn.execute(_INSERT, _entry(actor, action, target_type, target_id, store_id, details, None))


# The columns :func:`_entry` fills, each bound by its own name.
_COLUMNS = ("actor", "actor_app", "action", "target_type", "target_id", "store_id", "details")
_INSERT = insert(AuditLog).values({name: bindparam(name) for name in (*_COLUMNS, "outcome")})


def _entry(
    actor: str,
    action: str,
    target_type: str,
    target_id: str | None,
    store_id: uuid.UUID | None,
    details: dict[str, Any] | None,
    actor_app: str | None,
    outcome: Outcome = Outcome.SUCCEEDED,
) -> dict[str, Any]:
    return {
        "actor": actor,
        "actor_app": actor_app,
        "action": action,
        "target_type": target_type,
        "target_id": target_id,
        "store_id": store_id,
        "details": details or {},
        "outcome": outcome.value,
    }


@dataclass
class Attempt:
    """What an audited action will record; its body may add details and the target."""

    actor: str
    action: str
    target_type: str
    target_id: str | None = None
    store_id: uuid.UUID | None = None
    details: dict[str, Any] = field(default_factory=dict)
