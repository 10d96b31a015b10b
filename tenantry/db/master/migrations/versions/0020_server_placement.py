"""server placement

Database servers carry labels (``region``, ``tier``) and capacity (``max_tenants``,
``max_bytes``, ``accepting``) so ``provision --new`` can place a store by policy; stores carry
their data-residency requirement (``residency_region``, ``residency_tier``), checked by every
provision, move and restore.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-04 10:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | Sequence[str] | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SERVER_COLUMNS = ("region", "tier", "max_tenants", "max_bytes", "accepting")
_STORE_COLUMNS = ("residency_region", "residency_tier")


def upgrade() -> None:
    # Not in batch mode: on SQLite a batch copies the table, and dropping the old one would
    # cascade to (or null) every row that references a store or a server. SQLite adds and
    # (3.35+) drops an unconstrained column in place, as the servers do.
    op.add_column("database_servers", sa.Column("region", sa.String(length=64), nullable=True))
    op.add_column("database_servers", sa.Column("tier", sa.String(length=64), nullable=True))
    op.add_column("database_servers", sa.Column("max_tenants", sa.Integer(), nullable=True))
    op.add_column("database_servers", sa.Column("max_bytes", sa.BigInteger(), nullable=True))
    # Servers registered before placement keep taking stores.
    op.add_column(
        "database_servers",
        sa.Column("accepting", sa.Boolean(), nullable=False, server_default=sa.true()),
    )
    op.add_column("stores", sa.Column("residency_region", sa.String(length=64), nullable=True))
    op.add_column("stores", sa.Column("residency_tier", sa.String(length=64), nullable=True))


def downgrade() -> None:
    for column in _STORE_COLUMNS:
        op.drop_column("stores", column)
    for column in _SERVER_COLUMNS:
        op.drop_column("database_servers", column)
