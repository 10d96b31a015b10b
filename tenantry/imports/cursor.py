"""The import cursor kept in a store's tenant database: which rows an import has copied.

The cursor (``tenantry_import_cursor``) has one row per table copied: the last source key
copied, the rows and bytes so far, the running checksum of those rows, and whether the table is
done; its header row (``*``) holds the mapping's fingerprint and whether seeded defaults were
removed. Each batch of rows is committed with its cursor row (:func:`advance`), so the cursor
always says exactly which rows are in.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    MetaData,
    Row,
    String,
    Table,
    Text,
    select,
    update,
)

#: The cursor row that describes the import itself (not a table).
HEADER = "*"

_metadata = MetaData()
CURSOR = Table(
    "tenantry_import_cursor",
    _metadata,
    Column("table_name", String(64), primary_key=True),
    Column("last_key", Text),
    Column("rows_copied", BigInteger, nullable=False, default=0),
    Column("bytes_copied", BigInteger, nullable=False, default=0),
    Column("done", Boolean, nullable=False, default=False),
    #: The running checksum of the source rows copied so far (:class:`Digest`), committed with
    #: them: the verification compares it with the imported rows' without reading them twice.
    Column("digest", String(64)),
    #: On the header row: the mapping's fingerprint and whether seeded rows were removed.
    Column("note", Text),
)


def advance(
    conn: Connection,
    name: str,
    last_key: str | None,
    rows: int,
    size: int,
    *,
    done: bool = False,
    digest: str | None = None,
) -> None:
    """Move table ``name``'s cursor on (in the caller's transaction)."""
    values: dict[str, Any] = {
        "rows_copied": CURSOR.c.rows_copied + rows,
        "bytes_copied": CURSOR.c.bytes_copied + size,
        "done": done,
    }
    if last_key is not None:
        values["last_key"] = last_key
    if digest is not None:
        values["digest"] = digest
    changed = conn.execute(
        update(CURSOR).where(CURSOR.c.table_name == name).values(values)
    ).rowcount
    if changed == 0:
        conn.execute(
            CURSOR.insert().values(
                table_name=name,
                last_key=last_key,
                rows_copied=rows,
                bytes_copied=size,
                done=done,
                digest=digest,
            )
        )


def read_header(conn: Connection) -> dict[str, Any] | None:
    """The import's header (fingerprint, seeded), or None before the import began writing."""
    note = conn.scalar(select(CURSOR.c.note).where(CURSOR.c.table_name == HEADER))
    return json.loads(note) if note else None


def begin(conn: Connection, fingerprint: str, *, seeded: bool) -> None:
    """Write the header of an import that begins (in the caller's transaction)."""
    conn.execute(
        CURSOR.insert().values(
            table_name=HEADER,
            rows_copied=0,
            bytes_copied=0,
            done=False,
            note=json.dumps({"fingerprint": fingerprint, "seeded": seeded}),
        )
    )


def read_cursors(conn: Connection) -> dict[str, Row[Any]]:
    """Each table's cursor row (not the header), by table name."""
    return {r.table_name: r for r in conn.execute(select(CURSOR)) if r.table_name != HEADER}
