"""The checksum of rows as PostgreSQL's COPY streams them: a PostgreSQL → PostgreSQL import's
verification of the tables copied in the store's one snapshot, without reading the source again.

The source's ``COPY (SELECT …) TO STDOUT`` sends one message per row (the protocol's copy-out
mode: "always one per row"); the copy hashes each message on its way to the tenant database
(:meth:`StreamDigest.stream`), so the source's rows are counted and hashed from the very read
that feeds the tenant, in the snapshot the copy reads in. The verification then has the tenant
database stream the table back in the same format (:func:`table_digest`): the same rows give
the same bytes, any changed, missing or extra row a different count or sum. Order-independent
(a sum of each row's SHA-256), so the tenant may give its rows back in any order.

Binary streams open with a header (sent with the first row) and end with a trailer message;
neither is a row, so neither is hashed. Text streams have neither.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy import Connection

#: The start of a binary COPY stream: its signature, flags and header extension length (0).
BINARY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
HEADER_BYTES = len(BINARY_SIGNATURE) + 4 + 4
#: The message that ends a binary COPY stream (a field count of -1).
TRAILER = b"\xff\xff"

_MODULUS = 2**256


class StreamDigest:
    """The row count and order-independent checksum of COPY streams of one format."""

    def __init__(self, *, binary: bool) -> None:
        self.binary = binary
        self.rows = 0
        self.total = 0

    def stream(self, messages: Iterable[Any]) -> Iterator[Any]:
        """Pass one COPY stream's messages through, each row counted and hashed."""
        sha256 = hashlib.sha256
        total, rows = self.total, 0
        first = self.binary
        try:
            for message in messages:
                row = message
                if first:
                    first = False
                    row = bytes(message)
                    if row[: len(BINARY_SIGNATURE)] != BINARY_SIGNATURE or row[15:19] != bytes(4):
                        raise ValueError("the COPY stream has no binary header this reads")
                    row = row[HEADER_BYTES:]
                    if row in (b"", TRAILER):  # no rows: the trailer came with the header
                        yield message
                        continue
                elif self.binary and len(row) == 2 and bytes(row) == TRAILER:
                    yield message
                    continue
                total += int.from_bytes(sha256(row).digest(), "big")
                rows += 1
                yield message
        finally:
            self.total = total % _MODULUS
            self.rows += rows

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StreamDigest):
            return NotImplemented
        return (self.rows, self.total, self.binary) == (other.rows, other.total, other.binary)

    def __hash__(self) -> int:
        return hash((self.rows, self.total, self.binary))

    @property
    def hex(self) -> str:
        """The checksum as text (shown in the outcome)."""
        return f"{self.total:064x}"


def table_digest(conn: Connection, table: str, columns: list[str], *, binary: bool) -> StreamDigest:
    """Every row of ``table`` (``columns``, in that order) streamed by the server behind
    ``conn`` in COPY's binary or text format, counted and hashed (text: in the settings the
    copy wrote it in, which the caller set on ``conn``)."""
    quote = conn.dialect.identifier_preparer.quote
    options = " (FORMAT BINARY)" if binary else ""
    statement = f"COPY {quote(table)} ({', '.join(quote(c) for c in columns)}) TO STDOUT{options}"
    digest = StreamDigest(binary=binary)
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        with cursor.copy(statement) as out:
            for _ in digest.stream(out):
                pass
    finally:
        cursor.close()
    return digest
