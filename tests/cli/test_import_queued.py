"""``tenantry import shared --queue``: each store's import run by real ``tenantry worker``
processes; a worker killed mid-copy is taken over by the next, the source's sealed URL is
forgotten when the last store ends."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select

from tenantry.db.master.models import ImportJob, ImportSource
from tests.cli.conftest import Invoke, as_json, process_env
from tests.conftest import require_server
from tests.helpers import start_worker
from tests.imports.fixtures import (
    MAPPING,
    SOURCE_FOR,
    SourceFactory,
    admin_url,
    assert_exactly_once,
    raw,
    shared_source,
    shop_prefix,
    store_rows,
)

__all__ = ["shared_source", "shop_prefix"]  # fixtures, imported to be found

LEASE_S = "1"
PASSWORD = "Sealed-pw-4791"


def _imports(cli: Invoke) -> list[dict[str, Any]]:
    listed = cli("ops", "list", "--kind", "import", "--json")
    assert listed.exit_code == 0, listed.output
    return list(as_json(listed)["items"])


def _wait_all_ended(cli: Invoke, count: int, seconds: float = 180) -> list[dict[str, Any]]:
    deadline = time.monotonic() + seconds
    while True:
        ops = _imports(cli)
        if len(ops) == count and all(
            o["status"] in ("succeeded", "failed", "cancelled") for o in ops
        ):
            return ops
        assert time.monotonic() < deadline, f"imports still running: {ops}"
        time.sleep(0.3)


def _master_counts(data_dir: Path) -> tuple[int, int]:
    engine = create_engine(f"sqlite:///{data_dir / 'master.db'}")
    try:
        with engine.connect() as conn:
            sources = conn.scalar(select(func.count()).select_from(ImportSource)) or 0
            jobs = conn.scalar(select(func.count()).select_from(ImportJob)) or 0
            return int(sources), int(jobs)
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql", "mysql"])
def test_queued_import_survives_a_killed_worker(
    cli: Invoke,
    backend: str,
    tmp_path: Path,
    shop_prefix: str,
    shared_source: SourceFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    require_server(backend)
    monkeypatch.setenv("TENANTRY_JOB_LEASE_SECONDS", LEASE_S)
    source = shared_source(SOURCE_FOR[backend], shop_prefix, stores_count=3)
    if source.drivername.startswith("postgresql"):  # trust auth: any password is accepted
        source = source.set(password=PASSWORD)
    data_dir = tmp_path / "data"
    assert cli("init").exit_code == 0
    server: list[str] = []
    if backend != "sqlite":
        assert cli("servers", "add", "main", "--url", admin_url(backend)).exit_code == 0
        server = ["--server", "main"]
    args = ["import", "shared", "--url", raw(source), "--map", str(MAPPING)]
    queued = cli(*args, "--create-stores", *server, "--batch-rows", "10", "--queue", "--json")
    assert queued.exit_code == 0, queued.output
    doc = as_json(queued)
    assert doc["pending"] == 3
    assert doc["ok"] is True
    assert {o["status"] for o in doc["stores"]} == {"queued"}
    # The source is kept for the workers, sealed: neither it nor its password is readable in
    # master, and no answer shows the password.
    assert _master_counts(data_dir) == (1, 3)
    master = (data_dir / "master.db").read_bytes()
    assert raw(source).encode() not in master
    assert PASSWORD.encode() not in master
    assert PASSWORD not in queued.output
    assert PASSWORD not in cli("ops", "list", "--json").output

    env = process_env(data_dir, TENANTRY_JOB_LEASE_SECONDS=LEASE_S)
    log = tmp_path / "worker.log"
    victim = f"{shop_prefix}-002"
    doomed = start_worker(env, log, TENANTRY_FAILPOINTS=f"import.batch.{victim}.order_items.2=kill")
    assert doomed.wait(timeout=180) == -9, log.read_text()[-3000:]
    partial = sum(store_rows(victim, "order_items", ["id"]).values())
    assert partial > 0  # killed mid-copy, with some of its rows in

    rescuer = start_worker(env, log)
    try:
        ops = _wait_all_ended(cli, 3)
    finally:
        rescuer.terminate()
        rescuer.wait(timeout=30)
    assert {o["target"]: o["status"] for o in ops} == {
        f"{shop_prefix}-00{n}": "succeeded" for n in (1, 2, 3)
    }, log.read_text()[-3000:]
    assert next(o["attempts"] for o in ops if o["target"] == victim) == 2
    assert_exactly_once(source, shop_prefix, 3)
    assert PASSWORD not in log.read_text()
    assert _master_counts(data_dir) == (0, 0)  # the last store to end forgot the source

    again = cli(*args, "--queue", "--json")  # nothing left to queue: every store is in
    assert again.exit_code == 0, again.output
    assert {o["status"] for o in as_json(again)["stores"]} == {"skipped"}
    assert _master_counts(data_dir) == (0, 0)


def test_queue_wait_with_no_worker_says_how_to_start_one_and_queueing_again_is_safe(
    cli: Invoke, tmp_path: Path, shop_prefix: str, shared_source: SourceFactory
) -> None:
    source = shared_source("sqlite", shop_prefix, stores_count=2)
    assert cli("init").exit_code == 0
    args = ["import", "shared", "--url", raw(source), "--map", str(MAPPING), "--create-stores"]
    waited = cli(*args, "--queue", "--wait")
    assert waited.exit_code != 0
    assert "no job worker is running: this import (2 stores) stays queued" in waited.output
    assert "tenantry worker" in waited.output
    assert {o["status"] for o in _imports(cli)} == {"queued"}  # still there for a worker

    # Asked again while they wait: the same two operations, now reading the source given last;
    # the earlier source is forgotten.
    again = cli(*args, "--queue", "--json")
    assert again.exit_code == 0, again.output
    ops = _imports(cli)
    assert len(ops) == 2
    assert {o["status"] for o in ops} == {"queued"}
    assert _master_counts(tmp_path / "data") == (1, 2)

    alone = cli("import", "shared", "--url", raw(source), "--map", str(MAPPING), "--wait")
    assert alone.exit_code != 0
    assert "--wait goes with --queue" in alone.output
