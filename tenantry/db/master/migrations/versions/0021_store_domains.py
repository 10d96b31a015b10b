"""store domains

``store_domains``: the custom hosts a store claims, each with the token that proves control
of the host and when it was verified; only verified hosts resolve to their store.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-04 10:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tenantry.db.types

revision: str = "0021"
down_revision: str | Sequence[str] | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "store_domains",
        sa.Column("id", tenantry.db.types.GUID(), nullable=False),
        sa.Column("store_id", tenantry.db.types.GUID(), nullable=False),
        sa.Column("host", sa.String(length=253), nullable=False),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("verified_at", tenantry.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", tenantry.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["store_id"],
            ["stores.id"],
            name=op.f("fk_store_domains_store_id_stores"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_store_domains")),
        sa.UniqueConstraint("host", name=op.f("uq_store_domains_host")),
    )
    with op.batch_alter_table("store_domains", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_store_domains_store_id"), ["store_id"], unique=False)


def downgrade() -> None:
    op.drop_table("store_domains")
