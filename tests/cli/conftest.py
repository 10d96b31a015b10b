"""Run the CLI in-process with a clean environment pointing at per-test databases."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tenantry.cli.main import app

Invoke = Callable[..., Any]
ENV_VARS = (
    "DATABASE_URL",
    "DATABASE_URL_BILLING",
    "TENANTRY_DATA_DIR",
    "TENANTRY_SECRET_KEYS",
    "TENANTRY_QUEUE_URL",
    "TENANTRY_QUEUE_NAME",
    "TENANTRY_APP",
    "TENANTRY_TENANT_SCHEMA",
)


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Invoke:
    """``cli("db", "status", env={...})`` runs tenantry; the data dir is a fresh temp dir."""
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TENANTRY_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()

    def invoke(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> Any:
        return runner.invoke(app, list(args), env=env, input=input, catch_exceptions=False)

    return invoke


def as_json(result: Any) -> Any:
    """The single JSON document a ``--json`` command printed."""
    return json.loads(result.stdout)


def process_env(data_dir: Path, **settings: str) -> dict[str, str]:
    """The environment of a ``python -m tenantry`` child on the installation in ``data_dir``:
    this process's, without any tenantry setting or database URL of its own, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TENANTRY_", "DATABASE_URL"))}
    return {**env, "TENANTRY_DATA_DIR": str(data_dir), "TENANTRY_SPARE_DATABASES": "0", **settings}
