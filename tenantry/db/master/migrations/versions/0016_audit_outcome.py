"""audit outcome

Every audit entry says how the action ended (succeeded, failed, refused); the entries
written before this revision recorded only actions that had succeeded.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03 19:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audit_logs", schema=None) as batch_op:
        # The default fills the rows written before outcomes were: those recorded successes.
        batch_op.add_column(
            sa.Column("outcome", sa.String(length=16), nullable=False, server_default="succeeded")
        )


def downgrade() -> None:
    with op.batch_alter_table("audit_logs", schema=None) as batch_op:
        batch_op.drop_column("outcome")
