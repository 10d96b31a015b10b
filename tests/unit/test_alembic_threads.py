"""``alembic.op`` and ``alembic.context`` are per thread: threads running scripts at the same
moment each reach their own migration."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
import threading

import pytest
import sqlalchemy as sa
from alembic import op
from alembic.migration import MigrationContext
from alembic.operations import Operations

from tenantry.db import alembic_threads


def test_threads_running_scripts_at_once_each_reach_their_own_migration() -> None:
    alembic_threads.install()
    both_inside = threading.Barrier(2, timeout=10)
    outputs: dict[str, str] = {}
    errors: list[BaseException] = []

    def script(table: str) -> None:
        buffer = io.StringIO()
        context = MigrationContext.configure(
            dialect_name="postgresql", opts={"as_sql": True, "output_buffer": buffer}
        )
        try:
            with Operations.context(context):
                both_inside.wait()  # both proxies are installed before either runs an op
                op.add_column(table, sa.Column("note", sa.String(20)))
                both_inside.wait()
                op.create_index(f"ix_{table}_note", table, ["note"])
        except BaseException as exc:
            errors.append(exc)
        outputs[table] = buffer.getvalue()

    threads = [threading.Thread(target=script, args=(t,)) for t in ("alpha", "beta")]
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


def test_op_outside_any_migration_says_so() -> None:
    alembic_threads.install()
    with pytest.raises(NameError, match="alembic proxy unset"):
        op.add_column("t", sa.Column("x", sa.Integer()))


def test_installing_while_alembic_runs_a_migration_keeps_that_migration() -> None:
    # A fresh interpreter: Alembic's own proxy is in place when tenantry's is installed (an
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
            from tenantry.db import alembic_threads

            alembic_threads.install()
            op.add_column("gamma", sa.Column("note", sa.String(20)))
        print(buffer.getvalue())
        try:
            op.add_column("gamma", sa.Column("x", sa.Integer()))
        except NameError:
            print("unset after the migration")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    ).stdout
    assert "ALTER TABLE gamma ADD COLUMN note" in out
    assert "unset after the migration" in out
