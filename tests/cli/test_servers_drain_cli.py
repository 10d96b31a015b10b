"""`tenantry servers drain` and `servers rebalance` on real servers: two registered names on
the same PostgreSQL (or MariaDB) server stand for two servers; the stores' databases and logins
are dropped by ``server_slug``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tenantry.jobs.queue import Queue
from tenantry.settings import load_settings
from tests.cli.conftest import Invoke, as_json, process_env
from tests.conftest import require_server
from tests.services.test_moves import PG_PASSWORD, admin_url

BACKENDS = ["postgresql", "mysql"]


def _stores_on(cli: Invoke, backend: str, slug: str, names: list[str]) -> None:
    """``old`` (region ap) holding the stores ``names`` (``*-ap`` ones require region ap),
    and ``new`` (no region), both the local ``backend`` server."""
    require_server(backend)
    assert cli("init").exit_code == 0
    url = admin_url(backend)
    assert cli("servers", "add", "old", "--url", url, "--region", "ap").exit_code == 0
    assert cli("servers", "add", "new", "--url", url).exit_code == 0
    for name in names:
        region = ["--region", "ap"] if name.endswith("-ap") else []
        assert cli("stores", "create", f"{slug}-{name}", "--name", name, *region).exit_code == 0
        done = cli("provision", f"{slug}-{name}", "--new", "--server", "old", "--inline", "--json")
        assert done.exit_code == 0, done.output


def _server_of(cli: Invoke, store: str) -> str:
    return str(as_json(cli("stores", "show", store, "--json"))["connection"]["server"])


def _moves(cli: Invoke, store: str) -> list[dict[str, Any]]:
    listed = cli("stores", "moves", "list", "--store", store, "--json")
    assert listed.exit_code == 0, listed.output
    return list(as_json(listed))


@pytest.mark.parametrize("backend", BACKENDS)
def test_drain_moves_every_store_it_can_and_names_the_one_it_cannot(
    cli: Invoke, server_slug: str, backend: str
) -> None:
    _stores_on(cli, backend, server_slug, ["a", "b", "c", "x-ap"])
    stuck = f"{server_slug}-x-ap"

    planned = cli("servers", "drain", "old", "--dry-run", "--json")
    assert planned.exit_code == 1  # one store cannot move
    plan = as_json(planned)
    assert sorted(m["store"] for m in plan["moves"]) == [f"{server_slug}-{n}" for n in "abc"]
    assert {m["to"] for m in plan["moves"]} == {"new"}
    assert plan["cannot_move"][0]["store"] == stuck
    assert plan["cannot_move"][0]["requirement"] == "region ap"
    servers = {s["name"]: s for s in as_json(cli("servers", "list", "--json"))}
    assert servers["old"]["accepting"] is True  # a dry run changes nothing
    assert _moves(cli, f"{server_slug}-a") == []

    result = cli("servers", "drain", "old", "--concurrency", "2", "--json")

    assert result.exit_code == 1, result.output
    report = as_json(result)
    assert report["status"] == "failed"
    outcomes = {s["store"]: s for s in report["stores"]}
    assert {k: v["status"] for k, v in outcomes.items()} == {
        f"{server_slug}-{n}": "moved" for n in "abc"
    }
    assert report["cannot_move"][0]["store"] == stuck
    assert "new: region unset, the store requires ap" in report["cannot_move"][0]["why"]
    for name in "abc":
        store = f"{server_slug}-{name}"
        assert _server_of(cli, store) == "new"
        (move,) = _moves(cli, store)
        assert (move["status"], move["to_server"], move["source"]) == ("completed", "new", "kept")
        assert move["parent_id"] == report["operation_id"]
        shown = as_json(cli("ops", "show", move["id"], "--json"))
        assert shown["status"] == "succeeded"
    assert _server_of(cli, stuck) == "old"
    servers = {s["name"]: s for s in as_json(cli("servers", "list", "--json"))}
    assert servers["old"]["accepting"] is False
    assert (servers["old"]["tenants"], servers["new"]["tenants"]) == (1, 3)
    drain = as_json(cli("ops", "show", report["operation_id"], "--json"))
    assert drain["kind"] == "drain"
    assert "region ap" in drain["error"]
    assert PG_PASSWORD not in result.output

    # Run again (a new drain: the last one ended): nothing left to move but x-ap.
    human = cli("servers", "drain", "old", env={"COLUMNS": "200"})
    assert human.exit_code == 1
    assert "cannot move" in human.stdout
    assert stuck in human.stdout
    assert "requires region ap" in human.stdout
    assert all(len(_moves(cli, f"{server_slug}-{n}")) == 1 for n in "abc")


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_killed_drain_resumes_and_moves_each_store_once(
    cli: Invoke, server_slug: str, tmp_path: Path, backend: str
) -> None:
    _stores_on(cli, backend, server_slug, ["a", "b", "c"])
    lease = {"TENANTRY_JOB_LEASE_SECONDS": "3"}
    env = process_env(tmp_path / "data", **lease, TENANTRY_FAILPOINTS="move.after_copy=sleep:3")
    child = subprocess.Popen(
        [sys.executable, "-m", "tenantry", "servers", "drain", "old", "--json"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:  # one store moved, the next one mid-way
            moves = [m for n in "abc" for m in _moves(cli, f"{server_slug}-{n}")]
            if [m["status"] for m in moves].count("completed") == 1 and any(
                m["status"] == "running" for m in moves
            ):
                break
            time.sleep(0.3)
        else:
            pytest.fail("the drain never got to its second store")
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()

    resumed = cli("servers", "drain", "old", "--json", env=lease)

    assert resumed.exit_code == 0, resumed.output
    report = as_json(resumed)
    assert report["status"] == "succeeded"
    statuses = sorted(s["status"] for s in report["stores"])
    assert statuses == ["moved", "moved", "moved earlier"]
    rolled_back = 0
    for name in "abc":
        store = f"{server_slug}-{name}"
        assert _server_of(cli, store) == "new"
        moves = _moves(cli, store)
        completed = [m for m in moves if m["status"] == "completed"]
        assert len(completed) == 1  # moved once
        shown = as_json(cli("ops", "show", completed[0]["id"], "--json"))
        assert shown["status"] == "succeeded"
        rolled_back += sum(1 for m in moves if m["status"] == "rolled_back")
    assert rolled_back == 1  # the move the kill cut off, rolled back before it was redone
    drain = as_json(cli("ops", "show", report["operation_id"], "--json"))
    assert (drain["status"], drain["attempts"]) == ("succeeded", 2)


def test_rebalance_plans_the_fewest_moves_and_runs_them(cli: Invoke, server_slug: str) -> None:
    _stores_on(cli, "postgresql", server_slug, ["a", "b", "c", "d"])
    assert cli("servers", "set", "old", "--region", "none").exit_code == 0

    planned = cli("servers", "rebalance", "--max-skew", "0", "--dry-run", "--json")
    assert planned.exit_code == 0, planned.output
    plan = as_json(planned)
    assert (plan["skew_before"], plan["skew_after"], len(plan["moves"])) == (4, 0, 2)
    assert _moves(cli, f"{server_slug}-a") == []
    bad = cli("servers", "rebalance", "--max-skew", "lots")
    assert bad.exit_code != 0
    assert "--max-skew" in bad.stderr

    ran = cli("servers", "rebalance", "--max-skew", "0", "--json")

    assert ran.exit_code == 0, ran.output
    doc = as_json(ran)
    assert [s["status"] for s in doc["stores"]] == ["moved", "moved"]
    servers = {s["name"]: s for s in as_json(cli("servers", "list", "--json"))}
    assert (servers["old"]["tenants"], servers["new"]["tenants"]) == (2, 2)
    again = as_json(cli("servers", "rebalance", "--max-skew", "0", "--json"))
    assert again["moves"] == []  # already within the skew: nothing moves
    listed = cli("stores", "moves", "list", env={"COLUMNS": "200"})
    assert listed.exit_code == 0, listed.output
    moved = [s["store"] for s in doc["stores"]]
    for store in moved:
        assert store in listed.stdout
    assert listed.stdout.count("kept until") == 2
    unknown = cli("stores", "moves", "list", "--store", "nope")
    assert unknown.exit_code == 1
    assert "nope" in unknown.stderr


def test_a_queued_drain_is_run_by_a_worker(cli: Invoke, server_slug: str) -> None:
    _stores_on(cli, "postgresql", server_slug, ["a", "b"])

    queued = cli("servers", "drain", "old", "--queue", "--concurrency", "2", "--json")

    assert queued.exit_code == 0, queued.output
    doc = as_json(queued)
    assert sorted(m["store"] for m in doc["moves"]) == [f"{server_slug}-a", f"{server_slug}-b"]
    assert as_json(cli("ops", "show", doc["operation_id"], "--json"))["status"] == "queued"
    assert _server_of(cli, f"{server_slug}-a") == "old"
    queue = Queue(load_settings())  # the embedded queue in the data dir, as `tenantry worker`
    try:
        task = queue.huey.dequeue()
        assert task is not None
        assert task.name == "tenantry.drain"
        queue.huey.execute(task)
    finally:
        queue.close()
    drain = as_json(cli("ops", "show", doc["operation_id"], "--json"))
    assert drain["status"] == "succeeded"
    children = as_json(cli("ops", "list", "--parent", doc["operation_id"], "--json"))["items"]
    assert sorted(c["status"] for c in children) == ["succeeded", "succeeded"]
    assert {_server_of(cli, f"{server_slug}-{n}") for n in "ab"} == {"new"}


def test_a_queued_rebalance_is_run_by_a_worker(cli: Invoke, server_slug: str) -> None:
    _stores_on(cli, "postgresql", server_slug, ["a", "b", "c", "d"])
    assert cli("servers", "set", "old", "--region", "none").exit_code == 0

    queued = cli("servers", "rebalance", "--max-skew", "0", "--queue", "-c", "2", "--json")

    assert queued.exit_code == 0, queued.output
    doc = as_json(queued)
    assert len(doc["moves"]) == 2
    shown = as_json(cli("ops", "show", doc["operation_id"], "--json"))
    assert (shown["kind"], shown["status"]) == ("rebalance", "queued")
    # The same rebalance, found unfinished (one runs at a time).
    text = cli("servers", "rebalance", "--max-skew", "0", "--queue", env={"COLUMNS": "200"})
    assert text.exit_code == 0, text.output
    assert f"rebalance {doc['operation_id']} handed to" in text.stdout
    assert f"tenantry ops show {doc['operation_id']}" in text.stdout
    queue = Queue(load_settings())  # the embedded queue in the data dir, as `tenantry worker`
    try:
        task = queue.huey.dequeue()
        assert task is not None
        assert task.name == "tenantry.rebalance"
        queue.huey.execute(task)
        duplicate = queue.huey.dequeue()  # the second message: the rebalance is over
        assert duplicate is not None
        assert queue.huey.execute(duplicate) == "skipped"
    finally:
        queue.close()
    done = as_json(cli("ops", "show", doc["operation_id"], "--json"))
    assert done["status"] == "succeeded"
    assert (done["progress"]["current"], done["progress"]["total"]) == (2, 2)
    children = as_json(cli("ops", "list", "--parent", doc["operation_id"], "--json"))["items"]
    assert sorted(c["status"] for c in children) == ["succeeded", "succeeded"]
    servers = {s["name"]: s for s in as_json(cli("servers", "list", "--json"))}
    assert (servers["old"]["tenants"], servers["new"]["tenants"]) == (2, 2)
