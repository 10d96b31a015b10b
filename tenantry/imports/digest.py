"""Checksums that prove an import: the same digest of a store's mapped source rows and of its
tenant table, computed with :mod:`tenantry.db.copy`'s canonical row hash (order-independent,
engine-independent).

Only the columns the source determines are compared: a column filled by the tenant model's
own default (a fresh id, the time of the copy) differs each time it is computed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, Table, select
from sqlalchemy.types import JSON, TypeDecorator

from tenantry.db.copy import BATCH_ROWS, TableDigest, row_hash

_MODULUS = 2**256


def _json_flags(table: Table, columns: list[str]) -> list[bool]:
    flags = []
    for name in columns:
        type_ = table.c[name].type
        is_json = isinstance(type_, JSON) or (
            isinstance(type_, TypeDecorator) and isinstance(type_.impl_instance, JSON)
        )
        flags.append(is_json)
    return flags


class Digest:
    """A table digest built up row by row."""

    def __init__(self, table: Table, columns: list[str]) -> None:
        self.table = table
        self.columns = columns
        self.flags = _json_flags(table, columns)
        self.total = 0
        self.rows = 0

    def add(self, rows: Iterable[dict[str, Any]]) -> int:
        """Add tenant-shaped ``rows``; how many were added."""
        added = 0
        for row in rows:
            values = [row[c] for c in self.columns]
            self.total = (self.total + row_hash(values, self.flags)) % _MODULUS
            added += 1
        self.rows += added
        return added

    def result(self) -> TableDigest:
        """The count and checksum of the rows added."""
        header = json.dumps([self.table.name, self.columns]).encode()
        final = hashlib.sha256(header + f"|{self.rows}|{self.total:064x}".encode()).hexdigest()
        return TableDigest(self.table.name, self.rows, final)


def target_digest(
    conn: Connection, table: Table, columns: list[str], *, batch_rows: int = BATCH_ROWS
) -> TableDigest:
    """The digest of every row of tenant ``table`` over ``columns`` (only reads)."""
    digest = Digest(table, columns)
    result = conn.execution_options(yield_per=batch_rows).execute(
        select(*(table.c[c] for c in columns))
    )
    try:
        for batch in result.partitions():
            digest.add(dict(r._mapping) for r in batch)
    finally:
        result.close()
    return digest.result()
