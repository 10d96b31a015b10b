"""Finding one app's record by id: another app's record is simply not found."""

from __future__ import annotations

import uuid
from typing import Protocol, TypeVar

from sqlalchemy.orm import Session

from tenantry.errors import NotFound


class _Owned(Protocol):
    app_id: str


T = TypeVar("T", bound=_Owned)


def owned(session: Session, model: type[T], app_id: str, ident: str | uuid.UUID, label: str) -> T:
    """The ``model`` row with id ``ident`` if it belongs to ``app_id``, else NotFound."""
    try:
        key = ident if isinstance(ident, uuid.UUID) else uuid.UUID(str(ident))
    except ValueError:
        raise NotFound(f"no {label} {str(ident)!r}.") from None
    row = session.get(model, key)
    if row is None or row.app_id != app_id:
        raise NotFound(f"no {label} {str(ident)!r}.")
    return row
