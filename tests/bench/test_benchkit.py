"""The benches' shared kit: the gate that waits for a quiet machine before a run, and the
run's record of the commit it measured."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import benchkit


@pytest.fixture
def busy_machine() -> Iterator[list[int]]:
    """Two processes spinning, one per CPU of this 2-core machine (at least)."""
    spinners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(max(2, len(os.sched_getaffinity(0))))
    ]
    try:
        yield [p.pid for p in spinners]
    finally:
        for p in spinners:
            p.kill()
            p.wait()


def test_a_machine_that_never_gets_quiet_is_measured_anyway_and_its_busiest_are_named(
    busy_machine: list[int],
) -> None:
    record = benchkit.wait_until_quiet(max_busy=0.05, windows=2, timeout_s=2.0)
    assert record["quiet"] is False
    # It gave up at its timeout rather than waiting on: a bench is never held for good.
    assert 2.0 <= float(record["waited_s"]) < 6.0  # type: ignore[arg-type]
    assert float(record["busy_last_window"]) > 0.05  # type: ignore[arg-type]
    busiest = record["busiest"]
    assert isinstance(busiest, list)
    assert busiest
    assert all(re.fullmatch(r".+ \(\d+\): \d+ %", entry) for entry in busiest)
    # The run's JSON carries what the gate found and the probe taken after it.
    machine = benchkit.run_metadata()["machine"]
    assert isinstance(machine, dict)
    assert machine["quiet_at_start"] == record
    assert set(machine["probe_at_start"]) == {"cpu_ms", "fsync_ms", "query_us"}


def test_a_run_is_dirty_for_changed_code_but_not_for_the_benches_own_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip()

    git("init", "-q")
    (tmp_path / "bench" / "results").mkdir(parents=True)
    (tmp_path / "bench" / "results" / "fleet.json").write_text("{}\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", "-A")
    git("commit", "-qm", "first")
    head = git("rev-parse", "HEAD")
    monkeypatch.chdir(tmp_path)
    assert benchkit.run_metadata()["commit"] == head
    # A pass writing its JSON where the benches keep them: the code measured is unchanged.
    (tmp_path / "bench" / "results" / "fleet.json").write_text('{"ran": true}\n')
    assert benchkit.run_metadata()["commit"] == head
    (tmp_path / "code.py").write_text("x = 2\n")
    assert benchkit.run_metadata()["commit"] == f"{head}-dirty"
