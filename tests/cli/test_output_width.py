"""Human output sent to a pipe or a file: each table row stays on one line (Rich would fold it
at 80 columns there), and COLUMNS, when set, is still what the output is fitted to."""

from __future__ import annotations

import re
from pathlib import Path

from tests.cli.conftest import Invoke, process_env
from tests.helpers import tenantry_command

SLUG = "a-store-whose-slug-is-long-enough-to-fold"
NAME = "A store whose name is also quite long"


def test_piped_tables_and_messages_keep_each_value_on_one_line(cli: Invoke, tmp_path: Path) -> None:
    assert cli("init").exit_code == 0
    env = process_env(tmp_path / "data")
    created = tenantry_command(["stores", "create", SLUG, "--name", NAME], env)
    assert created.returncode == 0, created.stderr
    # The new store's id is printed whole: a script can cut it out of the line.
    assert re.search(rf"created store {SLUG} .*, id [0-9a-f-]{{36}}$", created.stdout, re.M)

    listed = tenantry_command(["stores", "list"], env)
    assert listed.returncode == 0, listed.stderr
    rows = [line for line in listed.stdout.splitlines() if SLUG in line]
    assert len(rows) == 1, listed.stdout  # `| grep SLUG` finds the store's whole row
    assert NAME in rows[0]
    assert "pending" in rows[0]

    narrow = tenantry_command(["stores", "list"], {**env, "COLUMNS": "60"})
    assert narrow.returncode == 0, narrow.stderr
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 60
    assert SLUG not in narrow.stdout  # folded to fit, as asked
