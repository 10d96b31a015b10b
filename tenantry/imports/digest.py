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

from tenantry.db.copy import BATCH_ROWS, TableDigest, canonical_row

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
        """Add tenant-shaped ``rows``; the size of their canonical form in bytes (what an
        import reports moving)."""
        size, total, count = 0, self.total, 0
        columns, flags = self.columns, self.flags
        for row in rows:
            # copy.row_hash, keeping the encoded row's length on the way.
            encoded = canonical_row([row[c] for c in columns], flags)
            total += int.from_bytes(hashlib.sha256(encoded).digest(), "big")
            count += 1
            size += len(encoded)
        self.total = total % _MODULUS
        self.rows += count
        return size

    def resume(self, rows: int, total_hex: str | None) -> None:
        """Start from a digest recorded earlier (``rows`` and :attr:`hex_total`)."""
        self.rows = rows
        self.total = int(total_hex, 16) if total_hex else 0

    @property
    def hex_total(self) -> str:
        """The running sum as text (recorded with the rows it covers)."""
        return f"{self.total:064x}"

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
    keys = list(result.keys())
    try:
        for batch in result.partitions():
            digest.add(dict(zip(keys, r, strict=True)) for r in batch)
    finally:
        result.close()
    return digest.result()
