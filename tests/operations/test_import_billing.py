"""The ``import_billing`` operation killed with SIGKILL in the middle of a table, in a child
process, then resumed by running the command again: the same operation goes on (attempt 2)
and every legacy row is in billing exactly once. And a legacy SQLite file imported into a
PostgreSQL billing database (engines differ on both sides)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import URL

from tenantry.db.admin import drop_database
from tenantry.db.master.models import Operation
from tenantry.db.urls import parse_url
from tenantry.operations.kit import OperationKit
from tenantry.runtime import Platform
from tenantry.settings import load_settings
from tests.conftest import SERVER_URLS, require_server
from tests.fixtures import legacy_billing
from tests.imports.conftest import (
    Invoke,
    billing_counts,
    billing_totals,
    legacy_url,
    run_import,
    url_text,
)
from tests.platform_fixtures import ENV_VARS, backend_platform, install

__all__ = ["backend_platform", "legacy_url", "run_import"]

APP = "resumed-app"
LEASE_S = 1.0
ROOT = Path(__file__).resolve().parents[2]
FEEDS = {
    "legacy_customers": "customers",
    "legacy_subscriptions": "subscriptions",
    "legacy_invoices": "invoices",
    "legacy_payments": "payments",
    "legacy_webhooks": "webhooks",
}


@pytest.fixture
def pg_billing_url() -> Iterator[URL]:
    """A PostgreSQL billing database name of this test's own, dropped after."""
    require_server("postgresql")
    url = parse_url(SERVER_URLS["postgresql"]).set(database=f"tt_billing_{uuid.uuid4().hex[:10]}")
    yield url
    drop_database(url)


def _child_env(**extra: str) -> dict[str, str]:
    return {**os.environ, **extra}


def test_killed_import_resumes_and_writes_each_row_once(
    backend_platform: Platform,
    legacy_url: URL,
    run_import: Invoke,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    legacy = legacy_billing.build(legacy_url)
    args = ["--url", url_text(legacy_url), "--map", str(legacy_billing.MAPPING), "--app", APP]
    monkeypatch.setenv("TENANTRY_JOB_LEASE_SECONDS", str(LEASE_S))

    # Killed right after the second batch of invoices committed, before its progress did.
    child = subprocess.run(
        [sys.executable, "-m", "tests.imports.billing_cli", "billing", *args, "--json"],
        cwd=ROOT,
        env=_child_env(TENANTRY_FAILPOINTS="import_billing.invoices.2=kill"),
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert child.returncode == -9, child.stderr
    cut = billing_counts(backend_platform, APP)
    assert cut["customers"] == legacy.rows["legacy_customers"]
    assert 0 < cut["invoices"] < legacy.rows["legacy_invoices"]
    assert cut["payments"] == 0
    with backend_platform.sessions() as session:
        stalled = session.scalars(select(Operation).where(Operation.kind == "import_billing")).one()
        assert stalled.status == "running"  # its process died holding it
        stalled_id, step = stalled.id, stalled.step
    assert step == "importing"

    time.sleep(LEASE_S * 1.5)  # the dead holder's lease and lock lapse
    resumed = run_import(*args, "--json")

    assert resumed.exit_code == 0, resumed.output
    doc = json.loads(resumed.stdout)
    assert uuid.UUID(doc["operation_id"]) == stalled_id
    assert doc["attempts"] == 2
    tables = {t["table"]: t for t in doc["tables"]}
    assert tables["legacy_invoices"]["already_imported"] == cut["invoices"]
    assert tables["legacy_invoices"]["written"] == legacy.rows["legacy_invoices"] - cut["invoices"]
    assert billing_counts(backend_platform, APP) == {FEEDS[t]: n for t, n in legacy.rows.items()}
    assert billing_totals(backend_platform, APP) == {
        FEEDS[t]: totals for t, totals in legacy.totals.items()
    }
    with backend_platform.sessions() as session:
        operation = session.get(Operation, stalled_id)
        assert operation is not None
        assert (operation.status, operation.attempts) == ("succeeded", 2)
        assert operation.message is not None
        assert "resumed" in operation.message


def test_sqlite_legacy_into_postgresql_billing(
    tmp_path: Path, pg_billing_url: URL, run_import: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TENANTRY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DATABASE_URL_BILLING", url_text(pg_billing_url))
    settings = load_settings()
    install(settings)
    legacy_url = parse_url(f"sqlite:///{tmp_path / 'legacy.db'}")
    legacy = legacy_billing.build(legacy_url, customers_count=120)
    platform = Platform.open(settings)
    try:
        result = run_import(
            "--url", url_text(legacy_url), "--map", str(legacy_billing.MAPPING), "--app", APP
        )
        assert result.exit_code == 0, result.output
        assert "verified" in result.stdout
        assert billing_counts(platform, APP) == {FEEDS[t]: n for t, n in legacy.rows.items()}
        assert billing_totals(platform, APP) == {
            FEEDS[t]: totals for t, totals in legacy.totals.items()
        }
    finally:
        platform.close()


def _wait_for(predicate: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)
def test_a_second_import_of_the_app_is_refused_and_a_cancel_stops_at_a_batch(
    backend_platform: Platform, legacy_url: URL, run_import: Invoke
) -> None:
    legacy = legacy_billing.build(legacy_url, customers_count=450)
    args = ["--url", url_text(legacy_url), "--map", str(legacy_billing.MAPPING), "--app", APP]
    # The child pauses after its first batch of customers committed.
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.imports.billing_cli", "billing", *args, "--json"],
        cwd=ROOT,
        env=_child_env(TENANTRY_FAILPOINTS="import_billing.customers.1=sleep:4"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(lambda: billing_counts(backend_platform, APP)["customers"] > 0, 60)

        second = run_import(*args)

        assert second.exit_code == 1
        assert f"import-billing:{APP} is held by" in second.stderr
        kit = OperationKit.from_settings(backend_platform.sessions, backend_platform.settings)
        with backend_platform.sessions() as session:
            running = session.scalars(
                select(Operation).where(Operation.kind == "import_billing")
            ).one()
        assert kit.request_cancel(running.id) == "cancelling"
        out, _ = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 1
    assert "was cancelled" in json.loads(out)["error"]["message"]
    with backend_platform.sessions() as session:
        operation = session.get(Operation, running.id)
        assert operation is not None
        assert operation.status == "cancelled"
    stopped = billing_counts(backend_platform, APP)
    assert 0 < stopped["customers"] < legacy.rows["legacy_customers"]
    assert stopped["invoices"] == 0

    finished = run_import(*args, "--json")

    assert finished.exit_code == 0, finished.output
    assert billing_counts(backend_platform, APP) == {FEEDS[t]: n for t, n in legacy.rows.items()}
