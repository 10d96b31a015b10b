"""provisioning jobs are operations

Every provisioning job becomes an operation of kind ``provision`` with the same id, its
lifecycle (status, step, tables created of total, message, error, attempts, lease, times)
moved into ``operations``, history kept; ``provisioning_jobs`` keeps only what is
provisioning's own and points at its operation.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tenantry.db.types

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The lifecycle columns that move to ``operations``, with their types (for the downgrade).
MOVED = (
    ("status", sa.String(length=32)),
    ("step", sa.String(length=64)),
    ("message", sa.Text()),
    ("tables_created", sa.Integer()),
    ("total_tables", sa.Integer()),
    ("error", sa.Text()),
    ("attempts", sa.Integer()),
    ("worker_id", sa.String(length=64)),
    ("lease_expires_at", tenantry.db.types.UTCDateTime(timezone=True)),
    ("created_at", tenantry.db.types.UTCDateTime(timezone=True)),
    ("started_at", tenantry.db.types.UTCDateTime(timezone=True)),
    ("finished_at", tenantry.db.types.UTCDateTime(timezone=True)),
    ("updated_at", tenantry.db.types.UTCDateTime(timezone=True)),
)
#: Every moved column's values are copied into ``operations`` before it is dropped (the
#: destructive-change linter reports these drops without refusing them).
COPIED_BEFORE_DROP = {
    f"provisioning_jobs.{name}": "operations."
    + {"tables_created": "progress_current", "total_tables": "progress_total"}.get(
        name, "lease_holder" if name == "worker_id" else name
    )
    for name, _ in MOVED
}


def upgrade() -> None:
    # Status "completed" is "succeeded" for every operation; the rest keep their names.
    op.execute(
        """
        INSERT INTO operations (
            id, kind, store_id, target, status, step, progress_current, progress_total,
            progress_unit, message, error, attempts, lease_holder, lease_expires_at,
            cancel_requested_at, parent_id, requested_by, created_at, started_at, finished_at,
            updated_at
        )
        SELECT j.id, 'provision', j.store_id, s.slug,
            CASE j.status WHEN 'completed' THEN 'succeeded' ELSE j.status END,
            j.step, j.tables_created, j.total_tables, 'tables', j.message, j.error, j.attempts,
            j.worker_id, j.lease_expires_at,
            CASE j.status WHEN 'cancelled' THEN j.finished_at ELSE NULL END,
            NULL, 'cli', j.created_at, j.started_at, j.finished_at, j.updated_at
        FROM provisioning_jobs j LEFT JOIN stores s ON s.id = j.store_id
        """
    )
    # ``--sql`` output cannot reflect the table SQLite's batch mode copies: it is given.
    offline = op.get_context().as_sql
    with op.batch_alter_table(
        "provisioning_jobs", schema=None, copy_from=_jobs_at_0008() if offline else None
    ) as batch_op:
        batch_op.drop_index(batch_op.f("ix_provisioning_jobs_lease_expires_at"))
        batch_op.drop_index(batch_op.f("ix_provisioning_jobs_status"))
        for name, _ in MOVED:
            batch_op.drop_column(name)
        batch_op.create_foreign_key(
            batch_op.f("fk_provisioning_jobs_id_operations"),
            "operations",
            ["id"],
            ["id"],
            ondelete="CASCADE",
        )


def _jobs_at_0008() -> sa.Table:
    """``provisioning_jobs`` as revisions 0001 to 0008 left it."""
    guid, when = tenantry.db.types.GUID, tenantry.db.types.UTCDateTime
    return sa.Table(
        "provisioning_jobs",
        sa.MetaData(),
        sa.Column("id", guid(), nullable=False),
        sa.Column("store_id", guid(), nullable=False),
        sa.Column("mode", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("step", sa.String(length=64), nullable=True),
        sa.Column("progress", sa.Integer(), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("tables_created", sa.Integer(), nullable=False),
        sa.Column("total_tables", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("database_server_id", guid(), nullable=True),
        sa.Column("created_at", when(timezone=True), nullable=False),
        sa.Column("started_at", when(timezone=True), nullable=True),
        sa.Column("finished_at", when(timezone=True), nullable=True),
        sa.Column("updated_at", when(timezone=True), nullable=False),
        sa.Column("target", sa.JSON(), nullable=True),
        sa.Column("secret_encrypted", sa.Text(), nullable=True),
        sa.Column("database_created", sa.Boolean(), nullable=False, server_default="0"),
        sa.Column("worker_id", sa.String(length=64), nullable=True),
        sa.Column("lease_expires_at", when(timezone=True), nullable=True),
        sa.CheckConstraint(
            "progress BETWEEN 0 AND 100", name="ck_provisioning_jobs_progress_range"
        ),
        sa.ForeignKeyConstraint(
            ["database_server_id"],
            ["database_servers.id"],
            name="fk_provisioning_jobs_database_server_id_database_servers",
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["store_id"],
            ["stores.id"],
            name="fk_provisioning_jobs_store_id_stores",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_provisioning_jobs"),
        sa.Index("ix_provisioning_jobs_database_server_id", "database_server_id"),
        sa.Index("ix_provisioning_jobs_status", "status"),
        sa.Index("ix_provisioning_jobs_store_id", "store_id"),
        sa.Index("ix_provisioning_jobs_lease_expires_at", "lease_expires_at"),
    )


def downgrade() -> None:
    with op.batch_alter_table("provisioning_jobs", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_provisioning_jobs_id_operations"), type_="foreignkey"
        )
        for name, type_ in MOVED:
            batch_op.add_column(sa.Column(name, type_, nullable=True))
    for name, _ in MOVED:
        source = {
            "tables_created": "progress_current",
            "total_tables": "progress_total",
            "worker_id": "lease_holder",
        }.get(name, name)
        value = f"(SELECT o.{source} FROM operations o WHERE o.id = provisioning_jobs.id)"
        if name == "status":
            value = f"CASE {value} WHEN 'succeeded' THEN 'completed' WHEN 'cancelling' THEN 'cancelled' ELSE {value} END"
        op.execute(f"UPDATE provisioning_jobs SET {name} = {value}")
    op.execute("DELETE FROM operations WHERE kind = 'provision'")
    with op.batch_alter_table("provisioning_jobs", schema=None) as batch_op:
        batch_op.alter_column("status", existing_type=sa.String(length=32), nullable=False)
        for name in ("attempts", "tables_created", "total_tables"):
            batch_op.alter_column(name, existing_type=sa.Integer(), nullable=False)
        for name in ("created_at", "updated_at"):
            batch_op.alter_column(
                name, existing_type=tenantry.db.types.UTCDateTime(timezone=True), nullable=False
            )
        batch_op.create_index(batch_op.f("ix_provisioning_jobs_status"), ["status"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_provisioning_jobs_lease_expires_at"), ["lease_expires_at"], unique=False
        )
