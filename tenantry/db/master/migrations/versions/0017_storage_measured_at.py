"""storage measured at

``stores.storage_measured_at``: when the usage rollup last measured the store's database
(``storage_used_bytes``), so the scheduler measures each store at most every
``TENANTRY_USAGE_REFRESH_MINUTES`` and writes yesterday's usage row once after midnight.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03 23:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tenantry.db.types

revision: str = "0017"
down_revision: str | Sequence[str] | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("stores", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "storage_measured_at", tenantry.db.types.UTCDateTime(timezone=True), nullable=True
            )
        )


def downgrade() -> None:
    # Not in batch mode: on SQLite that copies ``stores`` into a new table, and dropping the
    # old one would cascade to every row that references a store. SQLite (3.35+) drops an
    # unconstrained column in place, as the servers do.
    op.drop_column("stores", "storage_measured_at")
