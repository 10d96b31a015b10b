"""fleet runs are operations

Every fleet run becomes an operation of kind ``fleet_run`` with the same id, its lifecycle
(status, holder as the lease holder, tenants done of total as progress in ``tenants``, start
and finish) moved into ``operations``, history kept; ``fleet_runs`` keeps what is the run's own
(role, goal, outcome counts, options) and gains ``skipped`` (tenants a cancelled run did not
start). ``fleet_locks`` goes: its leases move to ``operation_locks`` (``fleet:<role>``, and the
backup scheduler's ``backup-scheduler``). A lock table holds no history, only who holds a
lease now; the rows are copied all the same so a run in flight keeps its lease.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 12:00:00.000000
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

import tenantry.db.types

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The lifecycle columns that move to ``operations``, with their types (for the downgrade).
MOVED = (
    ("status", sa.String(length=16)),
    ("holder", sa.String(length=128)),
    ("total", sa.Integer()),
    ("started_at", tenantry.db.types.UTCDateTime(timezone=True)),
    ("finished_at", tenantry.db.types.UTCDateTime(timezone=True)),
)
#: Where each moved column's values go.
SOURCE = {"holder": "lease_holder", "total": "progress_total"}
#: Every moved column's values (and every lock) are copied before the drop (the
#: destructive-change linter reports these drops without refusing them).
COPIED_BEFORE_DROP = {
    **{f"fleet_runs.{name}": f"operations.{SOURCE.get(name, name)}" for name, _ in MOVED},
    "fleet_locks": "operation_locks",
    "fleet_results_kept": "fleet_results",
}
#: What a moved NOT NULL column gets back where its operation holds nothing.
EMPTY = {"holder": "''", "total": "0"}
#: The lock names each old lock row becomes: a fleet run per role, and the scheduler's.
LOCK_NAMES = {
    "tenant": "fleet:tenant",
    "master": "fleet:master",
    "billing": "fleet:billing",
    "backup-scheduler": "backup-scheduler",
}


def upgrade() -> None:
    # "abandoned" is a failed operation at step "abandoned"; the counts become its progress.
    op.execute(
        """
        INSERT INTO operations (
            id, kind, store_id, target, status, step, progress_current, progress_total,
            progress_unit, message, error, attempts, lease_holder, lease_expires_at,
            cancel_requested_at, parent_id, requested_by, created_at, started_at, finished_at,
            updated_at
        )
        SELECT r.id, 'fleet_run', NULL, r.role,
            CASE r.status WHEN 'abandoned' THEN 'failed' ELSE r.status END,
            CASE r.status
                WHEN 'abandoned' THEN 'abandoned'
                WHEN 'running' THEN 'migrating'
                WHEN 'succeeded' THEN 'done'
                ELSE 'finished'
            END,
            r.migrated + r.current + r.failed, r.total, 'tenants', NULL,
            CASE r.status
                WHEN 'abandoned' THEN 'its process stopped; a later run took over'
                WHEN 'failed' THEN 'tenants failed or were refused (see `tenantry fleet status`)'
                ELSE NULL
            END,
            1, r.holder,
            CASE r.status WHEN 'running'
                THEN (SELECT l.expires_at FROM fleet_locks l WHERE l.run_id = r.id)
                ELSE NULL
            END,
            NULL, NULL, 'cli', r.started_at, r.started_at, r.finished_at,
            COALESCE(r.finished_at, r.started_at)
        FROM fleet_runs r
        """
    )
    for role, name in LOCK_NAMES.items():
        op.execute(
            "INSERT INTO operation_locks (name, operation_id, holder, expires_at) "
            f"SELECT '{name}', l.run_id, l.holder, l.expires_at FROM fleet_locks l "
            f"WHERE l.role = '{role}'"
        )
    # ``--sql`` output cannot reflect the table SQLite's batch mode copies: it is given.
    offline = op.get_context().as_sql
    with (
        _results_kept(),
        op.batch_alter_table(
            "fleet_runs", schema=None, copy_from=_runs_at_0009() if offline else None
        ) as batch_op,
    ):
        batch_op.drop_index(batch_op.f("ix_fleet_runs_started_at"))
        batch_op.drop_index(batch_op.f("ix_fleet_runs_status"))
        for name, _ in MOVED:
            batch_op.drop_column(name)
        batch_op.add_column(sa.Column("skipped", sa.Integer(), nullable=False, server_default="0"))
        batch_op.create_foreign_key(
            batch_op.f("fk_fleet_runs_id_operations"),
            "operations",
            ["id"],
            ["id"],
            ondelete="CASCADE",
        )
    op.drop_table("fleet_locks")


@contextmanager
def _results_kept() -> Iterator[None]:
    """On SQLite, batch mode recreates ``fleet_runs``, and dropping the old table deletes
    (foreign keys on: cascades to) every ``fleet_results`` row: they are set aside first and
    put back after. Other databases alter the table in place."""
    if op.get_context().dialect.name != "sqlite":
        yield
        return
    op.execute("CREATE TABLE fleet_results_kept AS SELECT * FROM fleet_results")
    yield
    op.execute("INSERT INTO fleet_results SELECT * FROM fleet_results_kept")
    op.drop_table("fleet_results_kept")


def _runs_at_0009() -> sa.Table:
    """``fleet_runs`` as revisions 0004 to 0009 left it."""
    guid, when = tenantry.db.types.GUID, tenantry.db.types.UTCDateTime
    return sa.Table(
        "fleet_runs",
        sa.MetaData(),
        sa.Column("id", guid(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("migrated", sa.Integer(), nullable=False),
        sa.Column("current", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("started_at", when(timezone=True), nullable=False),
        sa.Column("finished_at", when(timezone=True), nullable=True),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_fleet_runs"),
        sa.Index("ix_fleet_runs_started_at", "started_at"),
        sa.Index("ix_fleet_runs_status", "status"),
    )


def downgrade() -> None:
    op.create_table(
        "fleet_locks",
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("run_id", tenantry.db.types.GUID(), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=False),
        sa.Column("expires_at", tenantry.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("role", name=op.f("pk_fleet_locks")),
    )
    # A fleet lock goes back with its run; the scheduler's held no run id, and is taken
    # afresh by the next tick (a lock row is not history).
    for role, name in LOCK_NAMES.items():
        op.execute(
            "INSERT INTO fleet_locks (role, run_id, holder, expires_at) "
            f"SELECT '{role}', l.operation_id, l.holder, l.expires_at FROM operation_locks l "
            f"WHERE l.name = '{name}' AND l.operation_id IS NOT NULL"
        )
        op.execute(f"DELETE FROM operation_locks WHERE name = '{name}'")
    with _results_kept(), op.batch_alter_table("fleet_runs", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_fleet_runs_id_operations"), type_="foreignkey")
        for name, type_ in MOVED:
            batch_op.add_column(sa.Column(name, type_, nullable=True))
    for name, _ in MOVED:
        value = f"(SELECT o.{SOURCE.get(name, name)} FROM operations o WHERE o.id = fleet_runs.id)"
        if name == "status":
            step = "(SELECT o.step FROM operations o WHERE o.id = fleet_runs.id)"
            # The old words: a cancelled run failed to finish; one in flight is running.
            value = (
                f"CASE {value} WHEN 'failed' THEN CASE {step} WHEN 'abandoned' THEN 'abandoned' "
                "ELSE 'failed' END WHEN 'cancelled' THEN 'failed' WHEN 'cancelling' THEN 'running' "
                f"WHEN 'queued' THEN 'running' ELSE {value} END"
            )
        elif name == "started_at":
            created = "(SELECT o.created_at FROM operations o WHERE o.id = fleet_runs.id)"
            value = f"COALESCE({value}, {created})"
        elif name in ("holder", "total"):
            value = f"COALESCE({value}, {EMPTY[name]})"
        op.execute(f"UPDATE fleet_runs SET {name} = {value}")
    op.execute("DELETE FROM operations WHERE kind = 'fleet_run'")
    with _results_kept(), op.batch_alter_table("fleet_runs", schema=None) as batch_op:
        batch_op.drop_column("skipped")
        batch_op.alter_column("status", existing_type=sa.String(length=16), nullable=False)
        batch_op.alter_column("holder", existing_type=sa.String(length=128), nullable=False)
        batch_op.alter_column("total", existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column(
            "started_at",
            existing_type=tenantry.db.types.UTCDateTime(timezone=True),
            nullable=False,
        )
        batch_op.create_index(batch_op.f("ix_fleet_runs_started_at"), ["started_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_fleet_runs_status"), ["status"], unique=False)
