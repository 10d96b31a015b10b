"""What the destructive-change linter reports: one finding per operation worth a look."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    """One operation in a pending revision that deserves a human's attention."""

    revision: str  # the Alembic revision id
    # drop_table, drop_column, narrow_type, set_not_null, add_not_null_column, rename_table,
    # rename_column or raw_sql
    operation: str
    table: str | None
    column: str | None
    detail: str  # one sentence: what is wrong and why it loses data or breaks running code
    destructive: bool  # True: the upgrade is refused unless --allow-destructive

    def __str__(self) -> str:
        return f"{self.revision}: {self.operation}: {self.detail}"
