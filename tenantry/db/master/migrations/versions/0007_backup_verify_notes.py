"""backup verification notes

What a passing restore test could not check (amcheck skipped for a non-superuser) or noted
(MySQL row counts read outside the dump's snapshot), kept with the catalog row.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 08:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("backups", schema=None) as batch_op:
        batch_op.add_column(sa.Column("verify_notes", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("backups", schema=None) as batch_op:
        batch_op.drop_column("verify_notes")
