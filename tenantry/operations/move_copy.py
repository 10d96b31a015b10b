"""The copy and its verification when a store's database moves (steps 3 and 4 of
:mod:`tenantry.operations.move_store`): rows copied table by table, then compared by count and
content checksum (:mod:`tenantry.db.copy`) on both sides.

It lives with the operation, not in ``services``, because it owns transactions on the target
tenant database (one per table copied).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine

from tenantry.db import copy, migrations
from tenantry.db.engines import connect
from tenantry.db.identity import read_identity
from tenantry.db.schemas import SchemaSpec
from tenantry.errors import TenantryError
from tenantry.failpoints import failpoint
from tenantry.services.move_plan import move_tables


class VerificationFailed(TenantryError):
    """The copy does not match the source."""


def copy_tables(
    spec: SchemaSpec,
    source: Engine,
    target: Engine,
    *,
    revision: str | None,
    tables: dict[str, dict[str, Any]],
    batch_rows: int,
    on_rows: Callable[[int], None],
) -> None:
    """Copy the store's tables from ``source`` into ``target`` (parent-first, one
    transaction per table), then tenantry's bookkeeping: the revision stamped, the checksums
    and identity copied, in one last transaction. Each table's count goes in ``tables``."""
    with connect(source) as src, connect(target) as dst:
        data, bookkeeping = move_tables(spec, src)
        for table in data:
            failpoint(f"move.copy.{table.name}")
            with dst.begin():
                copied = copy.copy_table(
                    src,
                    dst,
                    table,
                    batch_rows=batch_rows,
                    on_rows=on_rows,
                )
                copy.reset_sequences(dst, table)
            src.rollback()  # end the read transaction each table's read began
            tables[table.name]["copied"] = copied
        # Last, in one transaction: the revision, the checksums and the identity that make
        # the target recognisably the store's database.
        with dst.begin():
            if revision is not None:
                migrations.stamp(dst, spec, revision)
            for table in bookkeeping:
                table.create(dst, checkfirst=True)
                copied = copy.copy_table(src, dst, table, on_rows=on_rows)
                tables[table.name]["copied"] = copied
        src.rollback()


def verify_copy(
    spec: SchemaSpec,
    source: Engine,
    target: Engine,
    *,
    details: dict[str, Any],
    batch_rows: int,
    on_rows: Callable[[int], None],
) -> None:
    """Compare every table's row count and content checksum, the identity and the revision
    on both sides (recorded in ``details``); any difference raises
    :class:`VerificationFailed`."""
    problems: list[str] = []
    with connect(source) as src, connect(target) as dst:
        data, bookkeeping = move_tables(spec, src)
        for table in data + bookkeeping:
            hashed: list[copy.TableDigest] = []
            for conn in (src, dst):
                hashed.append(
                    copy.table_digest(
                        conn,
                        table,
                        batch_rows=batch_rows,
                        on_rows=on_rows,
                    )
                )
                conn.rollback()
            before, after = hashed
            entry = details["tables"][table.name]
            entry.update(verified=after.rows, checksum=after.sha256[:16])
            if before.rows != after.rows:
                problems.append(f"{table.name}: {before.rows} rows in the source, {after.rows}")
            elif before.sha256 != after.sha256:
                problems.append(f"{table.name}: same {after.rows} rows, different content")
        if read_identity(src) != read_identity(dst):
            problems.append("the identity rows differ")
        revisions = (migrations.current(src, spec), migrations.current(dst, spec))
        if revisions[0] != revisions[1]:
            problems.append(f"revision {revisions[0]} in the source, {revisions[1]}")
    details["verified"] = not problems
    if problems:
        raise VerificationFailed(
            "the copy does not match the source (" + "; ".join(problems[:5]) + ").",
            "The move was rolled back; the store stays where it was. Something wrote to "
            "the source during the move, or the target altered the data: check and retry.",
        )
