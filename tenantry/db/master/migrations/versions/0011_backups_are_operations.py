"""backups are operations

Every backup in the catalog gets the operation that took it (kind ``backup``, the catalog
row's id as its own), history kept: queued, running, failed or succeeded (stored, verified,
corrupt and pruned backups were all taken), started and finished times, error, bytes. The
catalog keeps every column: it stays the artifact's record, outliving the operation's
history. It never had a lease of its own (its ``queued`` → ``running`` update was the claim);
a take recorded ``running`` here has no live holder, so the recovery sweep cleans it up and
fails it. Going back deletes the backup and restore-test operations after writing the end of
any take they recorded (failed, cancelled) onto its catalog row.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tenantry.db.types

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_guid, _when = tenantry.db.types.GUID, tenantry.db.types.UTCDateTime

#: The columns of the two tables this revision reads and writes, as revision 0009 left them.
backups = sa.table(
    "backups",
    sa.column("id", _guid()),
    sa.column("role", sa.String(16)),
    sa.column("store_id", _guid()),
    sa.column("slug", sa.String(63)),
    sa.column("status", sa.String(16)),
    sa.column("raw_bytes", sa.BigInteger()),
    sa.column("error", sa.Text()),
    sa.column("created_by", sa.String(128)),
    sa.column("started_at", _when(timezone=True)),
    sa.column("finished_at", _when(timezone=True)),
)
operations = sa.table(
    "operations",
    sa.column("id", _guid()),
    sa.column("kind", sa.String(32)),
    sa.column("store_id", _guid()),
    sa.column("target", sa.String(255)),
    sa.column("status", sa.String(16)),
    sa.column("step", sa.String(64)),
    sa.column("progress_current", sa.BigInteger()),
    sa.column("progress_total", sa.BigInteger()),
    sa.column("progress_unit", sa.String(16)),
    sa.column("message", sa.Text()),
    sa.column("error", sa.Text()),
    sa.column("attempts", sa.Integer()),
    sa.column("requested_by", sa.String(128)),
    sa.column("created_at", _when(timezone=True)),
    sa.column("started_at", _when(timezone=True)),
    sa.column("finished_at", _when(timezone=True)),
    sa.column("updated_at", _when(timezone=True)),
)

#: A catalog status → the operation's; every other one (stored, verified, corrupt, pruned)
#: was a take that succeeded.
STATUS = {"queued": "queued", "running": "running", "failed": "failed"}


def upgrade() -> None:
    b = backups.c
    status = sa.case(STATUS, value=b.status, else_=sa.literal("succeeded"))
    step = sa.case(
        {"queued": "queued", "running": "dump", "failed": "failed"},
        value=b.status,
        else_=sa.literal("done"),
    )
    columns = {
        "id": b.id,
        "kind": sa.literal("backup", sa.String(32)),
        "store_id": b.store_id,
        # The scope, as backup commands name it: master, billing or store:SLUG.
        "target": sa.case(
            (b.slug.is_(None), b.role), else_=sa.literal("store:", sa.String(255)) + b.slug
        ),
        "status": status,
        "step": step,
        "progress_current": sa.func.coalesce(b.raw_bytes, 0),
        "progress_total": b.raw_bytes,
        "progress_unit": sa.literal("bytes", sa.String(16)),
        "message": sa.null(),
        "error": b.error,
        "attempts": sa.case((b.status == "queued", 0), else_=1),
        "requested_by": b.created_by,
        "created_at": b.started_at,
        "started_at": sa.case((b.status == "queued", sa.null()), else_=b.started_at),
        "finished_at": b.finished_at,
        "updated_at": sa.func.coalesce(b.finished_at, b.started_at),
    }
    already = sa.select(operations.c.id).where(operations.c.id == b.id).exists()
    query = sa.select(*columns.values()).where(~already)
    op.execute(operations.insert().from_select(list(columns), query))


def downgrade() -> None:
    o = operations.c
    # A take that ended without storing anything says so on its catalog row, which is all
    # revision 0009 shows; a cancelled one is failed there, with why.
    for ended, error in (
        ("failed", sa.func.coalesce(_op(o.error), "the backup failed")),
        ("cancelled", sa.literal("cancelled on request before it was stored; nothing kept.")),
    ):
        op.execute(
            backups.update()
            .where(
                backups.c.status.in_(("queued", "running")),
                backups.c.id.in_(sa.select(o.id).where(o.kind == "backup", o.status == ended)),
            )
            .values(status="failed", error=error, finished_at=_op(o.finished_at))
        )
    # Restore tests first: they point at their take (parent_id).
    op.execute(operations.delete().where(o.kind == "backup_verify"))
    op.execute(operations.delete().where(o.kind == "backup"))


def _op(column: sa.ColumnClause[object]) -> sa.ScalarSelect[object]:
    """``column`` of the operation sharing the catalog row's id."""
    return sa.select(column).where(operations.c.id == backups.c.id).scalar_subquery()
