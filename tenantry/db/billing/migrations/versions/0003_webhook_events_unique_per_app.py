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
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("billing_webhooks", schema=None) as batch_op:
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
    shared = op.get_bind().execute(
        sa.text(
            "SELECT processor, event_id FROM billing_webhooks"
            " GROUP BY processor, event_id HAVING COUNT(*) > 1"
        )
    )
    first = shared.first()
    if first is not None:
        raise RuntimeError(
            f"cannot downgrade billing to 0002: event {first.event_id} of {first.processor} "
            "is stored for several apps, which 0002's unique key (processor, event_id) forbids."
        )
    with op.batch_alter_table("billing_webhooks", schema=None) as batch_op:
        batch_op.create_unique_constraint(
            batch_op.f("uq_billing_webhooks_processor_event_id"), ["processor", "event_id"]
        )
        batch_op.drop_constraint(
            batch_op.f("uq_billing_webhooks_app_id_processor_event_id"), type_="unique"
        )
