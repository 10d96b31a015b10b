"""An import's checksum is the one moves use: the same rows give the same digest whichever way
they are hashed (row by row here, :func:`tenantry.db.copy.table_digest` on a table)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import create_engine

from tenantry.db.copy import table_digest
from tenantry.db.tenant.store.models import metadata
from tenantry.imports.digest import Digest


def test_the_import_digest_equals_the_move_digest_of_the_same_rows() -> None:
    table = metadata.tables["settings"]
    rows: list[dict[str, Any]] = [
        {"key": "currency", "value": "EUR", "updated_at": datetime(2024, 5, 1, tzinfo=UTC)},
        {"key": "shipping", "value": {"zones": ["EU", "US"], "free_over": 5000},
         "updated_at": datetime(2024, 5, 2, 12, 30, tzinfo=UTC)},
        {"key": "café", "value": [1, 2.5, None], "updated_at": datetime(2024, 5, 3, tzinfo=UTC)},
    ]  # fmt: skip
    engine = create_engine("sqlite://")
    with engine.begin() as conn:
        table.create(conn)
        conn.execute(table.insert(), rows)
        moved = table_digest(conn, table)
    engine.dispose()
    imported = Digest(table, [c.name for c in table.columns])
    size = imported.add(reversed(rows))  # order does not matter
    assert imported.result() == moved
    assert size > 60  # three rows of canonical JSON

    resumed = Digest(table, [c.name for c in table.columns])
    resumed.add(rows[:1])
    again = Digest(table, [c.name for c in table.columns])
    again.resume(resumed.rows, resumed.hex_total)
    again.add(rows[1:])
    assert again.result() == moved
    other = Digest(table, [c.name for c in table.columns])
    other.add([{**rows[0], "value": "USD"}, *rows[1:]])
    assert other.result().sha256 != moved.sha256
