"""How many operations there are of each kind and status, from master's ``operations`` table."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tenantry.db.master.models import Operation


def operation_counts(session: Session) -> dict[tuple[str, str], int]:
    """The number of operations per (kind, status), in one aggregate query."""
    rows = session.execute(
        select(Operation.kind, Operation.status, func.count()).group_by(
            Operation.kind, Operation.status
        )
    )
    return {(str(kind), str(status)): int(n) for kind, status, n in rows}
