"""operation params

``operations.params``: what an operation was asked with that a process resuming it must keep
(a drain's or a rebalance's concurrency, a rebalance's allowed skew), so a worker resuming it
after its runner died runs it as it was asked.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-04 16:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0024"
down_revision: str | Sequence[str] | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # In place (not batch), as 0020: a batch on SQLite would copy the referencing tables.
    op.add_column("operations", sa.Column("params", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("operations", "params")
