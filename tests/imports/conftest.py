"""Fixtures of the import tests: a platform on each backend, and a legacy billing database
built on the same backend."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import URL
from typer.testing import CliRunner

from tenantry.imports.billing.targets import TARGETS
from tenantry.runtime import Platform
from tests.conftest import DbFactory
from tests.imports.billing_cli import app
from tests.platform_fixtures import backend_platform

__all__ = ["backend_platform"]

Invoke = Callable[..., Any]


@pytest.fixture
def legacy_url(new_database: DbFactory) -> URL:
    """An empty database on the test's backend for a legacy billing schema."""
    return new_database("legacy")


@pytest.fixture
def run_import() -> Invoke:
    """``run_import("--url", …)`` runs ``import billing`` in-process (the env is the test's)."""
    runner = CliRunner()

    def invoke(*args: str) -> Any:
        return runner.invoke(app, ["billing", *args], catch_exceptions=False)

    return invoke


def url_text(url: URL) -> str:
    """A URL as the command line takes it (password included)."""
    return url.render_as_string(hide_password=False)


def billing_counts(platform: Platform, app_id: str) -> dict[str, int]:
    """Rows of ``app_id`` in each billing table an import feeds."""
    counts: dict[str, int] = {}
    with platform.billing_engine.connect() as conn:
        for name, target in TARGETS.items():
            table = target.table
            counts[name.value] = int(
                conn.scalar(select(func.count()).where(table.c.app_id == app_id)) or 0
            )
    return counts


def billing_totals(platform: Platform, app_id: str) -> dict[str, dict[str, int]]:
    """Sum of amount_minor per currency of ``app_id``'s rows, per billing table."""
    totals: dict[str, dict[str, int]] = {}
    with platform.billing_engine.connect() as conn:
        for name, target in TARGETS.items():
            table = target.table
            if target.amount is None:
                continue
            query = (
                select(table.c.currency, func.sum(table.c.amount_minor))
                .where(table.c.app_id == app_id)
                .group_by(table.c.currency)
            )
            totals[name.value] = {c: int(t) for c, t in conn.execute(query)}
    return totals
