"""The checksum tables are safe to reach from many threads at once (a fleet run's tenants)."""

from __future__ import annotations

import subprocess
import sys

#: Run in a fresh process, so no earlier test has made the tables yet: 16 threads ask for
#: each role's table at the same moment, as a fleet run's first tenants do.
FIRST_USE_RACE = """
import sys
import threading
sys.setswitchinterval(1e-6)  # switch threads as often as possible: any race shows
from tenantry.db import checksums
from tenantry.db.schemas import Role

barrier = threading.Barrier(16)
errors = []

def ask():
    barrier.wait()
    try:
        for role in Role:
            checksums.checksum_table(role.value)
    except Exception as exc:
        errors.append(repr(exc))

threads = [threading.Thread(target=ask) for _ in range(16)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(errors)
"""


def test_first_use_from_many_threads_at_once_defines_each_table_once() -> None:
    done = subprocess.run(
        [sys.executable, "-c", FIRST_USE_RACE],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
