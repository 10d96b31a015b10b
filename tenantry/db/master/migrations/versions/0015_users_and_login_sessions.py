"""platform users' roles and login sessions

The unused ``admin`` user role becomes ``owner``; ``user_sessions`` keeps signed-in users'
sessions (a token's hash, never the token) and ``login_failures`` the failed logins that slow
down guessing.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 19:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tenantry.db.types

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WHEN = tenantry.db.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.execute("UPDATE users SET role = 'owner' WHERE role = 'admin'")
    op.create_table(
        "user_sessions",
        sa.Column("id", tenantry.db.types.GUID(), nullable=False),
        sa.Column("user_id", tenantry.db.types.GUID(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("expires_at", _WHEN, nullable=False),
        sa.Column("last_seen_at", _WHEN, nullable=False),
        sa.Column("ip_address", sa.String(length=45), nullable=True),
        sa.Column("user_agent", sa.String(length=512), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_user_sessions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_user_sessions_token_hash")),
    )
    with op.batch_alter_table("user_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_user_sessions_user_id"), ["user_id"], unique=False)
    op.create_table(
        "login_failures",
        sa.Column("id", tenantry.db.types.GUID(), nullable=False),
        sa.Column("email", sa.String(length=255), nullable=False),
        sa.Column("ip_address", sa.String(length=45), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_failures")),
    )
    with op.batch_alter_table("login_failures", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_login_failures_created_at"), ["created_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_login_failures_email_ip_address"),
            ["email", "ip_address"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_login_failures_ip_address"), ["ip_address"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("login_failures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_login_failures_ip_address"))
        batch_op.drop_index(batch_op.f("ix_login_failures_email_ip_address"))
        batch_op.drop_index(batch_op.f("ix_login_failures_created_at"))
    op.drop_table("login_failures")
    # The table's indexes go with it (MySQL will not drop the foreign key's index alone).
    op.drop_table("user_sessions")
    op.execute("UPDATE users SET role = 'admin' WHERE role = 'owner'")
