"""operations and operation locks

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tenantry.db.types

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "operation_locks",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("operation_id", tenantry.db.types.GUID(), nullable=True),
        sa.Column("holder", sa.String(length=128), nullable=False),
        sa.Column("expires_at", tenantry.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_operation_locks")),
    )
    op.create_table(
        "operations",
        sa.Column("id", tenantry.db.types.GUID(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("store_id", tenantry.db.types.GUID(), nullable=True),
        sa.Column("target", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("step", sa.String(length=64), nullable=True),
        sa.Column("progress_current", sa.BigInteger(), nullable=False),
        sa.Column("progress_total", sa.BigInteger(), nullable=True),
        sa.Column("progress_unit", sa.String(length=16), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_holder", sa.String(length=128), nullable=True),
        sa.Column("lease_expires_at", tenantry.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "cancel_requested_at", tenantry.db.types.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("parent_id", tenantry.db.types.GUID(), nullable=True),
        sa.Column("requested_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", tenantry.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("started_at", tenantry.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", tenantry.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", tenantry.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["operations.id"],
            name=op.f("fk_operations_parent_id_operations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operations")),
    )
    with op.batch_alter_table("operations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_operations_created_at"), ["created_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_operations_kind_status_created_at"),
            ["kind", "status", "created_at"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_operations_parent_id"), ["parent_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_operations_status_lease_expires_at"),
            ["status", "lease_expires_at"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_operations_store_id_created_at"),
            ["store_id", "created_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("operations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_operations_store_id_created_at"))
        batch_op.drop_index(batch_op.f("ix_operations_status_lease_expires_at"))
        batch_op.drop_index(batch_op.f("ix_operations_parent_id"))
        batch_op.drop_index(batch_op.f("ix_operations_kind_status_created_at"))
        batch_op.drop_index(batch_op.f("ix_operations_created_at"))
    op.drop_table("operations")
    op.drop_table("operation_locks")
