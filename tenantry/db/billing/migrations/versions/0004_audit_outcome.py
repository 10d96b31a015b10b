"""billing audit outcome

Every billing audit entry says how the action ended (succeeded, failed, refused), and is
indexed by time for ``audit list`` and the retention policy.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 19:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("billing_audit_logs", schema=None) as batch_op:
        # The default fills the rows written before outcomes were: those recorded successes.
        batch_op.add_column(
            sa.Column("outcome", sa.String(length=16), nullable=False, server_default="succeeded")
        )
        batch_op.create_index(
            batch_op.f("ix_billing_audit_logs_created_at"), ["created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("billing_audit_logs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_billing_audit_logs_created_at"))
        batch_op.drop_column("outcome")
