"""Every bench script answers ``--help``: its options are where a reader starts, and argparse
only formats a help text when asked (a stray ``%`` in one broke ``readme_table.py --help``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
SCRIPTS = sorted(p.name for p in BENCH.glob("*.py") if 'if __name__ == "__main__"' in p.read_text())


def test_the_bench_scripts_are_found() -> None:
    assert {"provision.py", "webhooks.py", "fleet.py", "readme_table.py"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_bench_script_prints_its_help(script: str) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / script), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("usage:"), done.stdout[:500]
    assert "--out" in done.stdout or script == "readme_table.py", done.stdout[:500]
