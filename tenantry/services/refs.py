"""Finding a row by its id or by the start of it, as tables show ids shortened.

Every command that takes an id (jobs, backups, webhook events) resolves it here, so a
prefix works everywhere and an ambiguous one is refused the same way everywhere.
"""

from __future__ import annotations

import re
import uuid
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, String, cast, literal, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from tenantry.errors import InvalidInput, NotFound

T = TypeVar("T")

#: Hex digits, with or without the dashes of a printed UUID.
_PREFIX = re.compile(r"^[0-9a-f][0-9a-f-]{0,35}$")
_DASHES_AFTER = (8, 12, 16, 20)
#: Candidates an ambiguity error lists; more would not help choose.
SHOWN_CANDIDATES = 5


def parse_ref(ref: str) -> uuid.UUID | str | None:
    """A whole id, the hex prefix of one (lowercase, no dashes), or None if it is neither."""
    text = ref.strip().lower()
    try:
        return uuid.UUID(text)
    except ValueError:
        pass
    hex_prefix = text.replace("-", "")
    if not _PREFIX.fullmatch(text) or len(hex_prefix) > 32:
        return None
    return hex_prefix


def _printed_prefix(hex_prefix: str) -> str:
    """``hex_prefix`` with the dashes a printed UUID has at its positions."""
    parts, start = [], 0
    for end in (*_DASHES_AFTER, 32):
        parts.append(hex_prefix[start:end])
        if end >= len(hex_prefix):
            break
        start = end
    return "-".join(parts)


def id_starts_with(
    session: Session, column: InstrumentedAttribute[uuid.UUID], hex_prefix: str
) -> ColumnElement[bool]:
    """A condition: the id in ``column`` starts with ``hex_prefix`` (lowercase hex digits, no
    dashes, as :func:`parse_ref` gives it)."""
    if not re.fullmatch(r"[0-9a-f]{1,32}", hex_prefix):
        raise ValueError(f"not a hex prefix of an id: {hex_prefix!r}")
    # The stored form differs per backend (native UUID on PostgreSQL, 32 hex digits elsewhere):
    # match the text each one casts its ids to. The prefix is checked hex, so LIKE is safe.
    dialect = session.get_bind().dialect.name
    pattern = (_printed_prefix(hex_prefix) if dialect == "postgresql" else hex_prefix) + "%"
    return cast(column, String).like(literal(pattern, String))


def find(
    session: Session,
    model: type[T],
    ref: str | uuid.UUID,
    *,
    what: str,
    hint: str,
    where: Any = None,
) -> T:
    """The ``model`` row whose id is ``ref`` or starts with it.

    ``what`` names the thing in errors ("provisioning job"), ``hint`` says where ids are
    listed; ``where`` narrows the candidates (e.g. to one app's rows). An unknown id is
    :class:`NotFound`; a prefix several ids start with is :class:`InvalidInput` listing them.
    """
    column: InstrumentedAttribute[uuid.UUID] = model.id  # type: ignore[attr-defined]
    parsed = ref if isinstance(ref, uuid.UUID) else parse_ref(str(ref))
    shown = str(ref).strip()
    if parsed is None:
        raise NotFound(f"no {what} {shown!r}: an id is a UUID or its first characters (hex).", hint)
    query = select(model)
    if where is not None:
        query = query.where(where)
    if isinstance(parsed, uuid.UUID):
        row = session.scalar(query.where(column == parsed))
        if row is None:
            raise NotFound(f"no {what} {shown!r}.", hint)
        return row
    rows = list(
        session.scalars(
            query.where(id_starts_with(session, column, parsed)).limit(SHOWN_CANDIDATES + 1)
        )
    )
    if not rows:
        raise NotFound(f"no {what} {shown!r}.", hint)
    if len(rows) > 1:
        ids = ", ".join(str(r.id) for r in rows[:SHOWN_CANDIDATES])  # type: ignore[attr-defined]
        more = ", …" if len(rows) > SHOWN_CANDIDATES else ""
        raise InvalidInput(
            f"several {what}s start with {shown!r}: {ids}{more}.", "Give more of the id."
        )
    return rows[0]
