"""Savepoints inside a caller's transaction: the one database-level primitive services need
to settle an insert race without ending (or committing) the transaction they were given."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session


def insert_in_savepoint(session: Session, row: object) -> IntegrityError | None:
    """Insert ``row`` in a savepoint of ``session``'s transaction; None when it is in, the
    refusal when a constraint refused it (typically: another transaction inserted the same
    unique key first). Only the savepoint is rolled back: the rest of the caller's
    transaction stands, and the refused ``row`` is not in the session."""
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError as refused:
        return refused
    return None
