"""Readiness: whether master, billing and the job queue answer now (``GET /ready``).

Each check is a cheap round trip. A failure names the part and what to do, never a URL or a
secret: the driver's message may quote either, so only the error's kind is shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from tenantry.db import migrations
from tenantry.db.engines import sqlite_path
from tenantry.db.schemas import SchemaSpec, billing_schema, master_schema
from tenantry.errors import TenantryError

if TYPE_CHECKING:
    from tenantry.operations.dispatch import Dispatcher
    from tenantry.runtime import Platform


@dataclass(frozen=True)
class Check:
    """One part: whether it answered, and if not, why and what to do."""

    name: str
    ok: bool
    error: str | None = None
    hint: str | None = None


def _database(name: str, engine: Engine, spec: SchemaSpec, variable: str) -> Check:
    hint = (
        f"Check that the {name} database ({variable}) exists and its server is running; "
        "`tenantry doctor` says more."
    )
    path = sqlite_path(engine.url)
    if path is not None and not path.is_file():
        # Connecting would create an empty file where the database was.
        return Check(name, False, f"the {name} database file is missing.", hint)
    try:
        with engine.connect() as conn:
            revision = migrations.current(conn, spec)
    except Exception as exc:  # any driver's error: the database does not answer
        return Check(
            name, False, f"the {name} database does not answer ({type(exc).__name__}).", hint
        )
    if revision is None:
        return Check(name, False, f"the {name} database has no tenantry schema.", hint)
    return Check(name, True)


def _queue(dispatcher: Dispatcher) -> Check:
    try:
        dispatcher.depth()
    except TenantryError as exc:
        return Check("queue", False, exc.message, exc.hint)
    except Exception as exc:  # a dispatcher's own error
        return Check(
            "queue",
            False,
            f"the job queue does not answer ({type(exc).__name__}).",
            "Check TENANTRY_QUEUE_URL and that the queue (Redis) is running.",
        )
    return Check("queue", True)


def readiness(platform: Platform, dispatcher: Dispatcher) -> list[Check]:
    """Master's, billing's and the queue's checks, in that order."""
    return [
        _database("master", platform.master_engine, master_schema(), "DATABASE_URL"),
        _database("billing", platform.billing_engine, billing_schema(), "DATABASE_URL_BILLING"),
        _queue(dispatcher),
    ]
