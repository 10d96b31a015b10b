"""access roles

The logins ``tenantry access grant`` creates (seed 004's read-only, service and admin
roles): name, scope, level, servers and databases, who made it, when, and when revoked.
Never a password.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 19:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tenantry.db.types

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "access_roles",
        sa.Column("id", tenantry.db.types.GUID(), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("scope", sa.String(length=80), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("servers", sa.JSON(), nullable=False),
        sa.Column("databases", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", tenantry.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", tenantry.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_roles")),
    )
    with op.batch_alter_table("access_roles", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_access_roles_name"), ["name"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("access_roles", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_access_roles_name"))
    op.drop_table("access_roles")
