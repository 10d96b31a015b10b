"""spare databases

``spare_databases``: the pool of tenant databases cloned ahead of time per registered server
(and SQLite files in the data dir), each stamped as unassigned until provisioning claims it.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04 10:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tenantry.db.types

revision: str = "0019"
down_revision: str | Sequence[str] | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "spare_databases",
        sa.Column("id", tenantry.db.types.GUID(), nullable=False),
        sa.Column("database_server_id", tenantry.db.types.GUID(), nullable=True),
        sa.Column("database_name", sa.String(length=63), nullable=False),
        sa.Column("template", sa.String(length=63), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("login_secret_encrypted", sa.Text(), nullable=True),
        sa.Column("created_at", tenantry.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["database_server_id"],
            ["database_servers.id"],
            name=op.f("fk_spare_databases_database_server_id_database_servers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_spare_databases")),
        sa.UniqueConstraint("database_name", name=op.f("uq_spare_databases_database_name")),
    )
    with op.batch_alter_table("spare_databases", schema=None) as batch_op:
        batch_op.create_index(
            "ix_spare_databases_pool", ["database_server_id", "status"], unique=False
        )


def downgrade() -> None:
    op.drop_table("spare_databases")
