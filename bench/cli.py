"""Benchmark: how long the ``tenantry`` command takes to start, beside ``alembic --version``.

    python bench/cli.py [--runs 30] [--out bench/results]

Each command is started ``--runs`` times, the commands taking turns (round-robin), so a slower
moment of the machine falls on all of them alike. Wall-clock time of the whole process, from
spawn to exit, with the same interpreter, every command's bytecode cached (as pip leaves an
installed package's; PYTHONDONTWRITEBYTECODE is not passed on). Prints a table (median, mean,
p90) and the ratio of each command's median to ``alembic --version``'s, and writes
``cli.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from benchkit import pct, run_metadata, wait_until_quiet
from rich.console import Console
from rich.table import Table

#: The floor: Alembic starting and printing its version (imports SQLAlchemy).
ANCHOR = "alembic --version"

COMMANDS: dict[str, list[str]] = {
    ANCHOR: ["-m", "alembic", "--version"],
    "tenantry --version": ["-m", "tenantry", "--version"],
    "tenantry --help": ["-m", "tenantry", "--help"],
    "tenantry fleet --help": ["-m", "tenantry", "fleet", "--help"],
    "tenantry stores --help": ["-m", "tenantry", "stores", "--help"],
}


#: The commands' environment: this one, but free to write bytecode caches. With
#: PYTHONDONTWRITEBYTECODE set (as on this project's machines) an editable install of tenantry
#: compiled its 300 modules again at every start (about 0.7 s of ``stores --help``'s 2 s),
#: while Alembic's were compiled by pip when it was installed: the warm-up below writes
#: tenantry's, as a regular install has them.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _once(args: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=60, check=False, env=ENV
    )
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({done.returncode}): {done.stderr[-500:]}")
    return took


def measure(runs: int) -> dict[str, list[float]]:
    """Seconds per start of every command, the commands taking turns."""
    for args in COMMANDS.values():  # warm the OS's file cache and the bytecode caches
        _once(args)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(runs):
        for name, args in COMMANDS.items():
            times[name].append(_once(args))
    return times


def main() -> None:
    """Measure, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    wait_until_quiet()
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    times = measure(args.runs)
    anchor = statistics.median(times[ANCHOR])
    rows: list[dict[str, Any]] = []
    for name, values in times.items():
        median = statistics.median(values)
        rows.append(
            {
                "command": name,
                "median_ms": round(median * 1000, 1),
                "mean_ms": round(statistics.fmean(values) * 1000, 1),
                "p90_ms": round(pct(values, 0.9) * 1000, 1),
                "vs_anchor": round(median / anchor, 2),
            }
        )

    table = Table(title=f"CLI start-up, {args.runs} runs each, taking turns")
    for column in ("command", "median ms", "mean ms", "p90 ms", f"vs {ANCHOR}"):
        table.add_column(column, justify="left" if column == "command" else "right")
    for row in rows:
        table.add_row(
            row["command"],
            f"{row['median_ms']:.1f}",
            f"{row['mean_ms']:.1f}",
            f"{row['p90_ms']:.1f}",
            f"{row['vs_anchor']:.2f}",
        )
    console = Console()
    console.print(table)

    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / "cli.json"
    document = {
        "bench": "cli",
        "runs": args.runs,
        "anchor": ANCHOR,
        "bytecode": "cached (written by the warm-up run)",
        "rows": rows,
        "run": run_metadata(),
        "versions": {p: version(p) for p in ("tenantry", "alembic", "typer", "sqlalchemy")},
    }
    out.write_text(json.dumps(document, indent=2) + "\n")
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
