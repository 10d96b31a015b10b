"""server pooler

``database_servers.pooler_url_encrypted``: the sealed URL of a connection pooler
(PgBouncer, transaction mode) in front of the server; stores' runtime connections go through
it, migrations, backups, restores and moves stay on the server itself.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-04 13:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | Sequence[str] | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # In place (not batch), as 0020: a batch on SQLite would copy the referenced table.
    op.add_column("database_servers", sa.Column("pooler_url_encrypted", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("database_servers", "pooler_url_encrypted")
