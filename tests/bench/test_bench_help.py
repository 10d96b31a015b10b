"""Every bench script answers ``--help``: its options are where a reader starts, and argparse
only formats a help text when asked (a stray ``%`` in one broke ``readme_table.py --help``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"

#: Runs each script as ``__main__`` with ``--help`` in one interpreter (the imports they share
#: are paid once) and prints, per script, its exit code and the start of its output.
RUNNER = """
import contextlib, io, json, runpy, sys
sys.path.insert(0, sys.argv[1])
seen = {}
for script in sys.argv[2:]:
    out, err = io.StringIO(), io.StringIO()
    sys.argv = [script, "--help"]
    code = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            runpy.run_path(script, run_name="__main__")
        except SystemExit as exc:
            code = exc.code
        except Exception as exc:  # a crash is the finding: report it, go on
            code = repr(exc)
    seen[script] = {"code": code, "output": out.getvalue()[:400]}
print(json.dumps(seen))
"""


def test_every_bench_script_prints_its_help() -> None:
    scripts = sorted(
        str(p) for p in BENCH.glob("*.py") if 'if __name__ == "__main__"' in p.read_text()
    )
    assert {"provision.py", "webhooks.py", "fleet.py", "readme_table.py"} <= {
        Path(s).name for s in scripts
    }
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, str(BENCH), *scripts],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    wrong = {
        Path(s).name: r
        for s, r in seen.items()
        if r["code"] not in (0, None) or not r["output"].startswith("usage:")
    }
    assert not wrong, wrong
