"""Running an operation right here, in the process that asked for it (a command, a request).

:func:`run_here` records the operation, claims it, keeps its lease alive while the block runs
and ends it as the block does: succeeded, failed with the error's message (credentials
masked), or cancelled when the block stopped at a step boundary because a cancel was asked.
The block reports each step with :meth:`Running.step`, which is also where a cancel request
is seen. A process that dies leaves the operation held with a lease that lapses; the recovery
sweep (:mod:`tenantry.operations.sweep`) then ends it with what to do next.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from tenantry.db.master.models import OperationKind, ProgressUnit
from tenantry.db.urls import redact
from tenantry.errors import Conflict, TenantryError
from tenantry.failpoints import failpoint
from tenantry.operations.kit import LostClaim, OperationKit
from tenantry.settings import Settings


class Cancelled(Conflict):
    """The operation was asked to stop; raised at a step boundary, before the next step."""

    def __init__(self, operation_id: uuid.UUID, step: str) -> None:
        super().__init__(
            f"operation {operation_id} was cancelled before {step!r}, as asked.",
            f"See what it did with `tenantry ops show {operation_id}`.",
        )
        self.operation_id = operation_id
        self.step = step


def error_message(exc: BaseException) -> str:
    """What an operation that failed with ``exc`` shows, in every kind: tenantry's own error
    with its hint, or any other as its type and the first line of its database driver's (or
    its own) message; credentials masked by structure, never by searching for a password."""
    if isinstance(exc, TenantryError):
        return redact(str(exc))
    first = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return redact(f"{type(exc).__name__}: {first[0] if first else ''}".rstrip(": "))


@dataclass
class Running:
    """An operation this process holds: report its steps through it."""

    kit: OperationKit
    id: uuid.UUID
    kind: OperationKind

    def step(
        self,
        name: str,
        *,
        current: int | None = None,
        total: int | None = None,
        unit: ProgressUnit | None = None,
        message: str | None = None,
        cancellable: bool = True,
    ) -> None:
        """Record that step ``name`` begins (with its progress, when given). Raises
        :class:`Cancelled` instead when a cancel was asked: nothing of ``name`` has run.
        Past the point where stopping would leave something half-done, ``cancellable=False``:
        a cancel asked then is too late, and the operation completes."""
        given: dict[str, Any] = {"step": name}
        for field, value in (
            ("current", current),
            ("total", total),
            ("unit", unit),
            ("message", message),
        ):
            if value is not None:
                given[field] = value
        if self.kit.progress(self.id, **given) and cancellable:
            raise Cancelled(self.id, name)
        # Tests make the process die or fail as the step begins: `store_delete.removing-the-store`.
        failpoint(f"{self.kind}.{name.replace(' ', '-')}")


@contextmanager
def run_here(
    sessions: sessionmaker[Session],
    settings: Settings,
    kind: OperationKind,
    *,
    store_id: uuid.UUID | None = None,
    target: str | None = None,
    requested_by: str = "cli",
) -> Iterator[Running]:
    """Record an operation of ``kind`` and run the block as its holder (see the module)."""
    kit = OperationKit.from_settings(sessions, settings)
    operation_id = kit.create(
        kind, store_id=store_id, target=target, requested_by=requested_by, step="starting"
    )
    if kit.claim(operation_id) is None:  # only a cancel in the instant since it was recorded
        raise Cancelled(operation_id, "starting")
    try:
        with kit.kept_alive(operation_id):
            yield Running(kit, operation_id, kind)
    except Cancelled as stopped:
        kit.mark_cancelled(operation_id, message=f"cancelled before {stopped.step}")
        raise
    except BaseException as exc:
        with suppress(LostClaim):  # ended meanwhile (the sweep took it for dead): keep `exc`
            kit.fail(operation_id, error_message(exc))
        raise
    kit.finish(operation_id)
