"""store runtime logins

How each store's database is reached: ``access_mode`` (``runtime_login``: a login tenantry
made with the ``service`` grants; ``given_url``: the URL the store was connected with; NULL:
a SQLite file, or stored before this revision: the server's admin URL or the given one), whether that login may
change the schema (``can_ddl``, probed when an existing database is connected) and when its
credentials were last set (``credentials_rotated_at``).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 19:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tenantry.db.types

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("integration_configs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("access_mode", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("can_ddl", sa.Boolean(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "credentials_rotated_at",
                tenantry.db.types.UTCDateTime(timezone=True),
                nullable=True,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("integration_configs", schema=None) as batch_op:
        batch_op.drop_column("credentials_rotated_at")
        batch_op.drop_column("can_ddl")
        batch_op.drop_column("access_mode")
