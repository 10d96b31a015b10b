"""Helpers shared by tests: schema snapshots that show whether a database changed."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, inspect, text


def schema_snapshot(conn: Connection) -> dict[str, Any]:
    """Every table with its columns, indexes, keys and uniques, plus version-table contents."""
    insp = inspect(conn)
    snap: dict[str, Any] = {}
    for table in sorted(insp.get_table_names()):
        snap[table] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(table)
            ],
            "indexes": sorted(
                (i["name"] or "", tuple(i["column_names"]), bool(i["unique"]))
                for i in insp.get_indexes(table)
            ),
            "fks": sorted(
                (f["name"] or "", tuple(f["constrained_columns"]), f["referred_table"])
                for f in insp.get_foreign_keys(table)
            ),
            "uniques": sorted(
                (u["name"] or "", tuple(u["column_names"]))
                for u in insp.get_unique_constraints(table)
            ),
        }
        if table.startswith("tenantry_"):
            rows = conn.execute(text(f"SELECT * FROM {table}")).all()
            snap[table]["rows"] = sorted(tuple(str(v) for v in r) for r in rows)
    return snap
