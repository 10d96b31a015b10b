"""The command starts without importing what it does not run."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tenantry.cli.main import COMMANDS, load

#: Imported only by the commands that use them.
HEAVY = ("sqlalchemy", "alembic", "huey", "fastapi", "boto3", "tenantry.db", "tenantry.services")


def _imported(*args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "tenantry", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    modules = {
        line.rsplit("|", 1)[1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    return done, modules


@pytest.mark.parametrize("args", [["--version"], ["--help"], []])
def test_version_and_help_import_nothing_heavy(args: list[str]) -> None:
    done, modules = _imported(*args)
    assert done.returncode in (0, 2), done.stderr[-2000:]  # no arguments prints help, exit 2
    assert done.stdout.strip()
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY or m.startswith(HEAVY))
    assert heavy == []


def test_root_help_lists_every_command_with_its_own_line() -> None:
    done, _ = _imported("--help")
    for name in COMMANDS:
        assert name in done.stdout
    for name, entry in COMMANDS.items():
        command = load(name)
        own = (command.help or "").split("\n\n")[0].strip()
        assert entry.help == own, f"tenantry {name}: the root lists {entry.help!r}, not {own!r}"


def test_an_unknown_command_is_still_a_usage_error_naming_it() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tenantry", "flet", "status"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "No such command 'flet'" in done.stderr


def test_a_reader_that_goes_away_stops_the_command_quietly() -> None:
    # `tenantry --help | head -1`: the pipe closes before the output is written.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "tenantry", "--help"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert done.returncode != 0
    assert done.stderr == ""
