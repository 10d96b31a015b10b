"""webhook events unique per app

One processor account may deliver the same event to several apps' endpoints; unique on
(processor, event_id) alone, the second app's delivery was taken for a duplicate of the
first's and never applied. Every stored row already satisfies the wider key, so the upgrade
keeps them all (SQLite rebuilds the table in batch mode, copying every row).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import mysql

import tenantry.db.types

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _webhooks(*unique: str) -> sa.Table:
    """billing_webhooks as it stands with the unique key ``unique``: SQLite rebuilds the
    table from this (so ``--sql`` works without a database to reflect)."""
    return sa.Table(
        "billing_webhooks",
        sa.MetaData(),
        sa.Column("id", tenantry.db.types.GUID(), nullable=False),
        sa.Column("app_id", sa.String(length=64), nullable=False),
        sa.Column("processor", sa.String(length=16), nullable=False),
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("event_type", sa.String(length=128), nullable=False),
        sa.Column(
            "payload",
            sa.Text()
            .with_variant(mysql.LONGTEXT(), "mariadb")
            .with_variant(mysql.LONGTEXT(), "mysql"),
            nullable=False,
        ),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("received_at", tenantry.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "processing_started_at", tenantry.db.types.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("processed_at", tenantry.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("next_attempt_at", tenantry.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("result", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_billing_webhooks"),
        sa.UniqueConstraint(*unique, name=f"uq_billing_webhooks_{'_'.join(unique)}"),
        sa.Index("ix_billing_webhooks_app_id_received_at", "app_id", "received_at"),
        sa.Index("ix_billing_webhooks_event_type", "event_type"),
        sa.Index("ix_billing_webhooks_status_next_attempt_at", "status", "next_attempt_at"),
    )


def upgrade() -> None:
    with op.batch_alter_table(
        "billing_webhooks", copy_from=_webhooks("processor", "event_id")
    ) as batch_op:
        # The new key first: the table is never without one.
        batch_op.create_unique_constraint(
            batch_op.f("uq_billing_webhooks_app_id_processor_event_id"),
            ["app_id", "processor", "event_id"],
        )
        batch_op.drop_constraint(
            batch_op.f("uq_billing_webhooks_processor_event_id"), type_="unique"
        )


def downgrade() -> None:
    # The narrower key cannot hold an event stored for two apps; say so rather than fail
    # half-way on an IntegrityError (dropping either row would lose an app's event).
    if not context.is_offline_mode():
        shared = op.get_bind().execute(
            sa.text(
                "SELECT processor, event_id FROM billing_webhooks"
                " GROUP BY processor, event_id HAVING COUNT(*) > 1"
            )
        )
        first = shared.first()
        if first is not None:
            raise RuntimeError(
                f"cannot downgrade billing to 0002: event {first.event_id} of "
                f"{first.processor} is stored for several apps, which 0002's unique key "
                "(processor, event_id) forbids."
            )
    with op.batch_alter_table(
        "billing_webhooks", copy_from=_webhooks("app_id", "processor", "event_id")
    ) as batch_op:
        batch_op.create_unique_constraint(
            batch_op.f("uq_billing_webhooks_processor_event_id"), ["processor", "event_id"]
        )
        batch_op.drop_constraint(
            batch_op.f("uq_billing_webhooks_app_id_processor_event_id"), type_="unique"
        )
