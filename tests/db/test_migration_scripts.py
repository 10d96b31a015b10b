"""The script directory a process loads once is the same for every thread, revision objects
included: a fleet worker's threads plan their upgrades on it at the same moment."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import MetaData

from tenantry.db import migrations
from tenantry.db.schemas import Role, SchemaSpec

#: Loading a revision takes a while (a big module, a slow disk): long enough that threads
#: asking for the scripts at the same moment all load them before any has finished.
SLOW_REVISION = '''"""{name}"""
import time

from alembic import op

revision = "{name}"
down_revision = {down}
branch_labels = None
depends_on = None

time.sleep(0.2)


def upgrade() -> None:
    pass
'''
THREADS = 4


def _spec(directory: Path) -> SchemaSpec:
    (directory / "versions").mkdir(parents=True)
    (directory / "env.py").write_text("from tenantry.db.alembic_env import run\n\nrun()\n")
    for name, down in (("r001", "None"), ("r002", '"r001"')):
        (directory / "versions" / f"{name}_x.py").write_text(
            SLOW_REVISION.format(name=name, down=down)
        )
    return SchemaSpec(Role.TENANT, "slowshop", MetaData(), directory)


def test_threads_loading_the_scripts_at_once_share_one_revision_map(tmp_path: Path) -> None:
    # Alembic builds a script directory's revision map lazily and without a lock; threads that
    # built it at once each got their own revision objects, and an upgrade plan that met both
    # (one thread's map read, then the other's stored) found r001 "not an ancestor" of r002:
    # a fleet tenant failed with RangeNotAncestorError.
    spec = _spec(tmp_path / "migrations")
    start = threading.Barrier(THREADS)
    found: list[object] = []
    plans: list[list[str]] = []

    def plan() -> None:
        start.wait()
        found.append(migrations.scripts(spec).get_revision("r002"))
        plans.append([s.revision for s in migrations.between(spec, "r001", "r002")])

    threads = [threading.Thread(target=plan) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(found) == THREADS
    assert len({id(revision) for revision in found}) == 1, "each thread loaded its own scripts"
    assert plans == [["r002"]] * THREADS
