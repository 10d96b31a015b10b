"""A CLI command pays nothing for metrics: only the API and an exporting worker observe them."""

from __future__ import annotations

import subprocess
import sys
from typing import Any


def test_a_command_that_opens_the_platform_never_imports_the_metrics_library(cli: Any) -> None:
    assert cli("init").exit_code == 0
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "tenantry", "stores", "list"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    imported = {
        line.rsplit("|", 1)[1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert "sqlalchemy" in imported  # it did open master
    assert "tenantry.observability.metrics" in imported  # the hooks are there, idle
    assert not {m for m in imported if m.startswith("prometheus_client")}
