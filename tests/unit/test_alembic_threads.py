"""Revision scripts' ``op`` and ``context`` are per thread: threads running scripts at the same
moment each reach their own migration, and Alembic's own proxies are left to Alembic."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from types import ModuleType

import pytest
import sqlalchemy as sa
from sqlalchemy import MetaData
from sqlalchemy.engine import make_url

from tenantry.db import alembic_threads, migrations
from tenantry.db.schemas import Role, SchemaSpec

# The dialect each thread's migration runs on names the table its script alters, so each
# output shows whose operations reached it.
REVISION = '''"""note on the dialect's table"""

import sqlalchemy as sa
from alembic import context, op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BOTH_INSIDE = None  # set by the test: a barrier both threads' scripts wait at


def upgrade() -> None:
    assert context.is_offline_mode()
    table = {"postgresql": "alpha", "mysql": "beta"}[op.get_context().dialect.name]
    BOTH_INSIDE.wait()  # both migrations are running before either runs an op
    op.add_column(table, sa.Column("note", sa.String(20)))
    BOTH_INSIDE.wait()
    op.create_index(f"ix_{table}_note", table, ["note"])


def downgrade() -> None:
    pass
'''


def revision_spec(directory: Path) -> tuple[SchemaSpec, ModuleType]:
    """A script directory with :data:`REVISION`, and that revision's loaded module."""
    (directory / "versions").mkdir(parents=True)
    (directory / "env.py").write_text("from tenantry.db.alembic_env import run\n\nrun()\n")
    (directory / "versions" / "0001_note.py").write_text(REVISION)
    spec = SchemaSpec(Role.TENANT, "threadshop", MetaData(), directory)
    script = migrations.scripts(spec).get_revision("0001")
    assert script is not None
    alembic_threads.bind(script)  # as running it does
    return spec, script.module


def test_threads_running_scripts_at_once_each_reach_their_own_migration(tmp_path: Path) -> None:
    spec, module = revision_spec(tmp_path)
    module.BOTH_INSIDE = threading.Barrier(2, timeout=10)  # type: ignore[attr-defined]
    outputs: dict[str, str] = {}
    errors: list[BaseException] = []

    def script(table: str, url: str) -> None:
        try:
            outputs[table] = migrations.upgrade_sql(spec, make_url(url), None, "head")
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=script, args=("alpha", "postgresql://h/a")),
        threading.Thread(target=script, args=("beta", "mysql+pymysql://h/b")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert "ALTER TABLE alpha ADD COLUMN note" in outputs["alpha"]
    assert "ON alpha (note)" in outputs["alpha"]
    assert "beta" not in outputs["alpha"]
    assert "ALTER TABLE beta ADD COLUMN note" in outputs["beta"]
    assert "alpha" not in outputs["beta"]


def test_op_outside_any_migration_says_so(tmp_path: Path) -> None:
    _spec, module = revision_spec(tmp_path)
    with pytest.raises(NameError, match="alembic proxy unset"):
        module.op.add_column("t", sa.Column("x", sa.Integer()))


def test_tenantry_imported_while_alembic_runs_a_migration_keeps_that_migration() -> None:
    # A fresh interpreter: Alembic's own proxy is in place when tenantry is imported (an
    # env.py that imports tenantry in the middle of `alembic upgrade`).
    program = textwrap.dedent(
        """
        import io
        import sqlalchemy as sa
        from alembic import op
        from alembic.migration import MigrationContext
        from alembic.operations import Operations

        buffer = io.StringIO()
        context = MigrationContext.configure(
            dialect_name="sqlite", opts={"as_sql": True, "output_buffer": buffer}
        )
        with Operations.context(context):
            import tenantry.db.lint
            import tenantry.db.migrations

            op.add_column("gamma", sa.Column("note", sa.String(20)))
        print(buffer.getvalue())
        try:
            op.add_column("gamma", sa.Column("x", sa.Integer()))
        except (NameError, AttributeError):  # Alembic's proxy: missing, or None once removed
            print("unset after the migration")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    ).stdout
    assert "ALTER TABLE gamma ADD COLUMN note" in out
    assert "unset after the migration" in out
