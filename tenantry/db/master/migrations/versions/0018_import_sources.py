"""import sources

``import_sources`` (a shared database that queued store imports read, its URL sealed, and the
mapping) and ``import_jobs`` (each store's ``import`` operation and its source), for
``tenantry import shared --queue``.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04 10:05:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tenantry.db.types

revision: str = "0018"
down_revision: str | Sequence[str] | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "import_sources",
        sa.Column("id", tenantry.db.types.GUID(), nullable=False),
        sa.Column("source_url", sa.Text(), nullable=False),
        sa.Column("mapping", sa.JSON(), nullable=False),
        sa.Column("server", sa.String(length=63), nullable=True),
        sa.Column("batch_rows", sa.Integer(), nullable=False),
        sa.Column("requested_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", tenantry.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_import_sources")),
    )
    op.create_table(
        "import_jobs",
        sa.Column("operation_id", tenantry.db.types.GUID(), nullable=False),
        sa.Column("source_id", tenantry.db.types.GUID(), nullable=False),
        sa.ForeignKeyConstraint(
            ["operation_id"],
            ["operations.id"],
            name=op.f("fk_import_jobs_operation_id_operations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["import_sources.id"],
            name=op.f("fk_import_jobs_source_id_import_sources"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("operation_id", name=op.f("pk_import_jobs")),
    )
    with op.batch_alter_table("import_jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_import_jobs_source_id"), ["source_id"], unique=False)


def downgrade() -> None:
    # The index goes with its table: MySQL refuses to drop it alone while the foreign key
    # on source_id needs it.
    op.drop_table("import_jobs")
    op.drop_table("import_sources")
