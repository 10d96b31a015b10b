"""`tenantry fleet` and `db lint|resolve` as a user runs them: separate processes, a tenant
schema plug-in of the app's own, a new revision rolled out, a run killed and resumed.

Every command after a revision file is added is its own process (as in real use), so the
plug-in's models and scripts are read fresh: forked from the fork server of
``tests/helpers.py``, which skips a new interpreter's start-up; the set-up before it (init,
stores, provisioning) runs in the test's process, which is quicker and sees the same files.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tenantry.cli.main import app
from tests.cli.conftest import process_env
from tests.conftest import DbFactory
from tests.helpers import tenantry_command

PLUGIN = '''"""A tenant schema whose models follow the revision files present."""

from pathlib import Path

from sqlalchemy import Column, Index, Integer, MetaData, String, Table

SCHEMA_NAME = "clishop"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
HAS_NOTE = (MIGRATIONS / "versions" / "c002_note.py").exists()

metadata = MetaData()
products = Table(
    "products",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    *([Column("note", String(200), nullable=True)] if HAS_NOTE else []),
)
if HAS_NOTE:
    Index("ix_products_note", products.c.note)
'''
C001 = '''"""products"""
import sqlalchemy as sa
from alembic import op

revision = "c001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "products",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("products")
'''
C002 = '''"""product note"""
import sqlalchemy as sa
from alembic import op

revision = "c002"
down_revision = "c001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("products", sa.Column("note", sa.String(200), nullable=True))
    op.create_index("ix_products_note", "products", ["note"])


def downgrade() -> None:
    op.drop_index("ix_products_note", "products")
    op.drop_column("products", "note")
'''


class Tenantry:
    """Runs ``python -m tenantry`` against one installation."""

    def __init__(self, tmp: Path, module: str) -> None:
        self.env = process_env(
            tmp / "data",
            TENANTRY_TENANT_SCHEMA=module,
            TENANTRY_JOB_LEASE_SECONDS="2",
            PYTHONPATH=os.pathsep.join([str(tmp / "plug"), os.getcwd()]),
        )

    def __call__(self, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return tenantry_command(list(args), {**self.env, **extra})

    def here(self, *args: str) -> Any:
        """Run a command in this process (before any revision file is added: the plug-in is
        imported here once and would not see later files)."""
        unset: dict[str, str | None] = {k: None for k in os.environ if k not in self.env}
        env = {**unset, **{k: v for k, v in self.env.items() if k != "PYTHONPATH"}}
        plug = str(self.env["PYTHONPATH"].split(os.pathsep)[0])
        sys.path.insert(0, plug)
        try:
            return CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
        finally:
            sys.path.remove(plug)

    def json(self, *args: str) -> Any:
        done = self(*args, "--json")
        assert done.returncode in (0, 1), done.stderr
        return json.loads(done.stdout)


def _plugin(tmp: Path) -> tuple[str, Path]:
    module = f"clishop_{uuid.uuid4().hex[:8]}"
    package = tmp / "plug" / module
    (package / "migrations" / "versions").mkdir(parents=True)
    (package / "__init__.py").write_text(PLUGIN)
    (package / "migrations" / "env.py").write_text(
        "from tenantry.db.alembic_env import run\n\nrun()\n"
    )
    (package / "migrations" / "versions" / "c001_products.py").write_text(C001)
    return module, package / "migrations" / "versions"


def test_rollout_kill_resume_and_resolve(
    tmp_path: Path, new_database: DbFactory, backend: str
) -> None:
    module, versions = _plugin(tmp_path)
    run = Tenantry(tmp_path, module)
    assert run.here("init").exit_code == 0
    slugs = ["north", "south", "west"]
    for slug in slugs:
        url = new_database(slug).render_as_string(hide_password=False)
        assert run.here("stores", "create", slug, "--name", slug.title()).exit_code == 0
        done = run.here("provision", slug, "--connect", url, "--inline")
        assert done.exit_code == 0, done.output

    before = run.json("fleet", "status")
    assert before["per_revision"] == {"c001": 3}
    assert before["lagging"] == []

    (versions / "c002_note.py").write_text(C002)
    lagging = run.json("fleet", "status")
    assert lagging["head"] == "c002"
    assert sorted(lagging["lagging"]) == sorted(slugs)

    lint = run("db", "lint", "--role", "tenant", "--all")
    assert lint.returncode == 0, lint.stdout + lint.stderr

    sql = run("fleet", "migrate", "--sql")
    assert sql.returncode == 0, sql.stderr
    assert "note" in sql.stdout
    assert "ix_products_note" in sql.stdout
    assert run.json("fleet", "status", "--verify")["verified"]["problems"] != []  # unchanged

    killed = run(
        "fleet", "migrate", "--concurrency", "1", TENANTRY_FAILPOINTS="migrate.before_commit=kill"
    )
    assert killed.returncode == -signal.SIGKILL

    time.sleep(2.5)  # the dead run's lock (a 2 s lease here) runs out
    resumed = run.json("fleet", "migrate")
    assert resumed["took_over"] is not None
    if backend == "mysql":
        # MariaDB commits DDL as it goes: the killed tenant has the column but not the
        # version row, so it fails (named) until an operator resolves it (seed 004 runbook).
        assert resumed["status"] == "failed"
        [failure] = resumed["failures"]
        assert failure["slug"] == "north"
        assert "note" in failure["error"].lower()
        fixed = run("db", "resolve", "c002", "--applied", "--store", "north")
        assert fixed.returncode == 0, fixed.stderr
        resumed = run.json("fleet", "migrate")
    assert resumed["status"] == "succeeded", resumed

    after = run.json("fleet", "status", "--verify")
    assert after["per_revision"] == {"c002": 3}
    assert after["verified"] == {"checked": 3, "problems": []}
    assert after["failed"] == []

    # Resolving by hand is recorded in master's audit log.
    rolled = run("db", "resolve", "c002", "--rolled-back", "--store", "west", "--json")
    assert rolled.returncode == 0, rolled.stderr
    assert json.loads(rolled.stdout)["after"] == "c001"
    with sqlite3.connect(tmp_path / "data" / "master.db") as master:
        actions = [r[0] for r in master.execute("SELECT action FROM audit_logs")]
    assert "migration.resolved" in actions
    assert run.json("fleet", "status", "--verify")["verified"]["problems"][0]["slug"] == "west"


def test_destructive_revision_is_refused_by_lint_and_fleet(
    tmp_path: Path, new_database: DbFactory
) -> None:
    module, versions = _plugin(tmp_path)
    run = Tenantry(tmp_path, module)
    assert run.here("init").exit_code == 0
    url = new_database("solo").render_as_string(hide_password=False)
    assert run.here("stores", "create", "solo", "--name", "Solo").exit_code == 0
    assert run.here("provision", "solo", "--connect", url, "--inline").exit_code == 0
    (versions / "c002_drop.py").write_text(
        C002.replace('"""product note"""', '"""drop name"""').replace(
            '    op.add_column("products", sa.Column("note", sa.String(200), nullable=True))\n'
            '    op.create_index("ix_products_note", "products", ["note"])\n',
            '    with op.batch_alter_table("products") as batch_op:\n'
            '        batch_op.drop_column("name")\n',
        )
    )
    lint = run("db", "lint", "--role", "tenant", "--all", "--json")
    assert lint.returncode == 1
    [finding] = [f for f in json.loads(lint.stdout)["findings"] if f["destructive"]]
    assert (finding["operation"], finding["table"], finding["column"]) == (
        "drop_column",
        "products",
        "name",
    )
    refused = run("fleet", "migrate")
    assert refused.returncode == 1
    assert "refusing a destructive" in refused.stdout
    consumer = run("fleet", "migrate", "--allow-destructive", "--as-app", "portal", "--json")
    assert consumer.returncode == 1
    assert "consumer" in json.loads(consumer.stdout)["failures"][0]["error"]


@pytest.mark.parametrize("queue", ["embedded", "redis"])
def test_queued_run_is_migrated_by_workers(
    tmp_path: Path, queue: str, request: pytest.FixtureRequest
) -> None:
    module, versions = _plugin(tmp_path)
    run = Tenantry(tmp_path, module)
    if queue == "redis":
        run.env.update(request.getfixturevalue("redis_queue"))
    assert run.here("init").exit_code == 0
    for slug in ("alpha", "beta", "gamma", "delta"):
        assert run.here("stores", "create", slug, "--name", slug.title()).exit_code == 0
        assert run.here("provision", slug, "--new", "--inline").exit_code == 0
    (versions / "c002_note.py").write_text(C002)
    log = (tmp_path / "workers.log").open("ab")
    workers = [  # two workers, as on two machines sharing the queue
        subprocess.Popen(
            [sys.executable, "-m", "tenantry", "worker", "--workers", "2"],
            env=run.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        for _ in range(2)
    ]
    try:
        done = run("fleet", "migrate", "--queue", "--wait", "--timeout", "90", "--json")
    finally:
        for proc in workers:
            proc.terminate()
        for proc in workers:
            proc.wait(timeout=30)
        log.close()
    assert done.returncode == 0, done.stdout + done.stderr
    doc = json.loads(done.stdout)
    assert doc["status"] == "succeeded"
    assert doc["counts"] == {"migrated": 4, "current": 0, "failed": 0}
    status = run.json("fleet", "status", "--verify")
    assert status["per_revision"] == {"c002": 4}
    assert status["last_run"]["id"] == doc["run_id"]
    assert status["verified"] == {"checked": 4, "problems": []}


def _provisioned(
    tmp_path: Path, new_database: DbFactory, slugs: list[str]
) -> tuple[Tenantry, Path]:
    """An installation with ``slugs`` provisioned at c001 on the backend, and c002 written."""
    module, versions = _plugin(tmp_path)
    run = Tenantry(tmp_path, module)
    assert run.here("init").exit_code == 0
    for slug in slugs:
        url = new_database(slug).render_as_string(hide_password=False)
        assert run.here("stores", "create", slug, "--name", slug.title()).exit_code == 0
        done = run.here("provision", slug, "--connect", url, "--inline")
        assert done.exit_code == 0, done.output
    (versions / "c002_note.py").write_text(C002)
    return run, versions


def _fleet_runs(run: Tenantry) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = run.json("ops", "list", "--kind", "fleet_run")["items"]
    return items


RECOVER = (
    "from tenantry.jobs.queue import Queue\n"
    "from tenantry.settings import load_settings\n"
    "queue = Queue(load_settings())\n"
    "print(queue.recover())\n"
    "queue.close()\n"
)


def test_a_killed_run_is_listed_failed_by_recovery_and_run_again(
    tmp_path: Path, new_database: DbFactory
) -> None:
    slugs = ["east", "north", "south"]
    run, _ = _provisioned(tmp_path, new_database, slugs)
    # Killed between tenants: the first tenant is whole at c002, the others untouched.
    killed = run("fleet", "migrate", "-c", "1", TENANTRY_FAILPOINTS="fleet.tenant_done=kill")
    assert killed.returncode == -signal.SIGKILL
    [listed] = _fleet_runs(run)
    assert listed["status"] == "running"  # as its process left it
    assert listed["progress"]["unit"] == "tenants"
    assert listed["progress"]["total"] == 3

    time.sleep(2.5)  # its lease (2 s here) lapses
    recovered = subprocess.run(
        [sys.executable, "-c", RECOVER], env=run.env, capture_output=True, text=True, check=False
    )
    assert recovered.returncode == 0, recovered.stderr
    shown = run.json("ops", "show", listed["id"])
    assert shown["status"] == "failed"
    assert "run `tenantry fleet migrate` again" in shown["error"]
    assert run.json("fleet", "status")["last_run"]["status"] == "abandoned"

    again = run.json("fleet", "migrate")
    assert again["status"] == "succeeded", again
    assert again["counts"] == {"migrated": 2, "current": 1}
    after = run.json("fleet", "status", "--verify")
    assert after["per_revision"] == {"c002": 3}
    assert after["verified"] == {"checked": 3, "problems": []}
    assert [r["status"] for r in _fleet_runs(run)] == ["succeeded", "failed"]


def test_ops_cancel_stops_a_run_at_a_tenant_boundary(
    tmp_path: Path, new_database: DbFactory
) -> None:  # tenant databases on each backend; master on SQLite (read below)
    slugs = ["alpha", "bravo", "charlie", "delta"]
    run, _ = _provisioned(tmp_path, new_database, slugs)
    # Every tenant takes 4 s before its commit: the cancel lands with one in hand.
    proc = subprocess.Popen(
        [sys.executable, "-m", "tenantry", "fleet", "migrate", "-c", "1", "--json"],
        env={**run.env, "TENANTRY_FAILPOINTS": "migrate.before_commit=sleep:4"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Watched in master directly: a command per look would start too slowly.
        deadline = time.monotonic() + 60
        seen = 0
        while not seen and time.monotonic() < deadline:
            time.sleep(0.1)
            with sqlite3.connect(tmp_path / "data" / "master.db") as master:
                query = "SELECT count(*) FROM operations WHERE kind = 'fleet_run'"
                seen = master.execute(query).fetchone()[0]
        [running] = _fleet_runs(run)
        cancelled = run.json("ops", "cancel", running["id"])
        assert cancelled.get("status") == "cancelling", cancelled
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, err
    doc = json.loads(out)
    assert doc["status"] == "cancelled"
    untouched = [o["slug"] for o in doc["outcomes"] if o["status"] == "skipped"]
    assert untouched  # at least the last tenants were never started
    assert all(o["status"] in ("migrated", "skipped") for o in doc["outcomes"])
    shown = run.json("ops", "show", running["id"])
    assert shown["status"] == "cancelled"
    assert shown["progress"]["current"] == 4
    # No tenant half-migrated: each is at c001 or c002, whole (no drift, no changed script).
    verified = run.json("fleet", "status", "--verify")
    assert sorted(verified["lagging"]) == sorted(untouched)
    for problem in verified["verified"]["problems"]:
        assert problem["slug"] in untouched
        assert problem["problems"] == ["at revision c001, the code expects c002"]
    assert verified["failed"] == []
    again = run.json("fleet", "migrate")
    assert again["status"] == "succeeded"
    assert again["counts"] == {"migrated": len(untouched), "current": 4 - len(untouched)}
