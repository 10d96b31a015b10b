"""shared-schema tenants

``integration_configs.db_schema``: the PostgreSQL schema a store lives in when it shares its
database with other stores (schema per tenant); NULL for a store with its own database.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-04 13:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | Sequence[str] | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("integration_configs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("db_schema", sa.String(length=63), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("integration_configs", schema=None) as batch_op:
        batch_op.drop_column("db_schema")
