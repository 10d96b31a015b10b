"""webhook events claimed in the order received

The worker claims the oldest received events first. An index on (status, received_at) gives
them in that order, a batch at a time, however many events wait or were applied before;
without it PostgreSQL read every waiting (or every stored) row and sorted them on each claim.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 20:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("billing_webhooks", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_billing_webhooks_status_received_at"),
            ["status", "received_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("billing_webhooks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_billing_webhooks_status_received_at"))
