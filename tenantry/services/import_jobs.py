"""Which store imports were handed to the workers (``import shared --queue``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from tenantry.db.master.models import ImportJob


def queued_imports(session: Session, operation_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    """Which of ``operation_ids`` are store imports handed to the workers: resumed by them
    when their worker dies, not ended as an import whose command died."""
    ids = list(operation_ids)
    if not ids:
        return set()
    return set(
        session.scalars(select(ImportJob.operation_id).where(ImportJob.operation_id.in_(ids)))
    )
