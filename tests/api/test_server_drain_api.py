"""Draining a server over HTTP while its stores take writes: POST …/drain answers 202 with the
drain's operation, a worker (here a background thread) moves each store, GET …/drain shows one
move operation per store, and each store's writes are refused (503) only while its own move
runs; every write that was accepted is in the store's new database."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from tenantry.api.app import create_app
from tenantry.operations.dispatch import InProcessDispatcher
from tenantry.runtime import Platform
from tenantry.services import apikeys
from tenantry.services.move_history import list_moves
from tenantry.settings import Settings
from tests.api.conftest import Api
from tests.conftest import require_server
from tests.services.test_moves import PG_PASSWORD, admin_url, cleanup, provision, register

__all__ = ["cleanup"]


@pytest.fixture
def worker_api(settings: Settings, platform: Platform, server_slug: str) -> Iterator[Api]:
    """The API with durable work run by a background thread, as a worker would. It needs
    ``server_slug`` so that the slug's databases are dropped after the thread's work has
    ended (a test failing mid-drain left the move's target database behind)."""
    dispatcher = InProcessDispatcher(settings, background=True)
    with platform.sessions.begin() as session:
        admin = apikeys.create_key(
            session, name="admin", scope=apikeys.Scope.ADMIN, actor="cli:test"
        )
    with TestClient(create_app(settings, dispatcher=dispatcher)) as client:
        yield Api(client, {"Authorization": f"Bearer {admin.plaintext}"}, platform)
    dispatcher.close()


@dataclass
class Write:
    store: str
    sku: str
    status: int
    at: datetime  # answered
    sent: datetime | None = None


def _wait(api: Api, url: str, done: set[str], *, key: str = "status") -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        doc = api.client.get(url, headers=api.admin).json()
        if doc[key] in done:
            return doc  # type: ignore[no-any-return]
        time.sleep(0.2)
    raise AssertionError(f"{url} never reached {done}")


def test_drain_over_http_moves_each_store_blocking_only_its_own_writes(
    worker_api: Api, server_slug: str
) -> None:
    require_server("postgresql")
    api = worker_api
    for name in ("old", "new"):
        added = api.client.post(
            "/database-servers",
            json={"name": name, "url": admin_url("postgresql")},
            headers=api.admin,
        )
        assert added.status_code == 201, added.text
    slugs = [f"{server_slug}-a", f"{server_slug}-b"]
    for slug in slugs:
        made = api.client.post("/stores", json={"slug": slug, "name": slug}, headers=api.admin)
        assert made.status_code == 201, made.text
        job = api.client.post(
            f"/stores/{slug}/provision",
            json={"mode": "create_new", "server": "old"},
            headers=api.admin,
        )
        assert job.status_code == 202, job.text
        _wait(api, job.json()["status_url"], {"completed", "failed"})
    refused = api.client.post("/database-servers/nope/drain", json={}, headers=api.admin)
    assert refused.status_code == 404
    bad = api.client.post("/database-servers/old/drain", json={"concurrency": 0}, headers=api.admin)
    assert bad.status_code == 422

    accepted = api.client.post("/database-servers/old/drain", json={}, headers=api.admin)

    assert accepted.status_code == 202, accepted.text
    body = accepted.json()
    assert sorted(m["store"] for m in body["moves"]) == slugs
    assert body["cannot_move"] == []
    writes: list[Write] = []
    refused_reads: list[str] = []
    n = 0
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        for slug in slugs:
            n += 1
            sku = f"SKU-{n}"
            sent = datetime.now(UTC)
            made = api.client.post(
                f"/stores/{slug}/products",
                json={"sku": sku, "name": "Mug", "price_minor": 100},
                headers=api.admin,
            )
            writes.append(Write(slug, sku, made.status_code, datetime.now(UTC), sent))
            read = api.client.get(f"/stores/{slug}/products", headers=api.admin)
            if read.status_code != 200:
                refused_reads.append(f"{slug}: {read.status_code} {read.text}")
        drain = api.client.get("/database-servers/old/drain", headers=api.admin).json()
        if drain["operation"]["status"] not in ("queued", "running"):
            break
        time.sleep(0.05)

    drain = api.client.get("/database-servers/old/drain", headers=api.admin).json()
    assert drain["operation"]["status"] == "succeeded", drain
    assert drain["operation"]["id"] == body["operation_id"]
    assert drain["operation"]["progress"]["current"] == 2
    assert [m["kind"] for m in drain["moves"]] == ["move", "move"]
    assert {m["status"] for m in drain["moves"]} == {"succeeded"}
    assert refused_reads == []
    assert {w.status for w in writes} <= {201, 503}
    windows = {}
    moved = {}  # each move's own span, as master recorded it
    for slug in slugs:
        (move,) = api.client.get(f"/moves?store={slug}", headers=api.admin).json()
        assert (move["status"], move["to_server"], move["source"]) == ("completed", "new", "kept")
        start = datetime.fromisoformat(move["started_at"]).replace(tzinfo=UTC)
        end = datetime.fromisoformat(move["finished_at"]).replace(tzinfo=UTC)
        moved[slug] = (start, end)
        windows[slug] = (start - timedelta(seconds=1), end + timedelta(seconds=1))
    for w in writes:
        if w.status == 503:  # refused only inside the store's own move
            assert windows[w.store][0] <= w.at <= windows[w.store][1], w
    for slug, other in ((slugs[0], slugs[1]), (slugs[1], slugs[0])):
        # Sent after the other's move began and answered before it ended: wholly inside it
        # (a move takes about a second now that it waits only for the writes in flight).
        during_other = [
            w
            for w in writes
            if w.store == slug
            and w.sent is not None
            and moved[other][0] < w.sent
            and w.at < moved[other][1]
        ]
        assert during_other, "no write landed while the other store moved"
        assert {w.status for w in during_other} == {201}
        listed = api.client.get(f"/stores/{slug}/products", headers=api.admin).json()
        accepted_skus = {w.sku for w in writes if w.store == slug and w.status == 201}
        assert accepted_skus <= {p["sku"] for p in listed}  # no accepted write was lost
    assert any(w.status == 503 for w in writes)  # each store's own switch did block it
    assert PG_PASSWORD not in accepted.text


def test_rebalance_over_http_is_one_operation_a_worker_runs(
    worker_api: Api, cleanup: None, server_slug: str
) -> None:
    require_server("postgresql")
    api = worker_api
    register(api.platform, "old", "postgresql")
    register(api.platform, "new", "postgresql")
    slugs = [f"{server_slug}-{n}" for n in "abcd"]
    for slug in slugs:
        provision(api.platform, slug, server="old")
    url = "/database-servers/rebalance"
    bad = api.client.post(url, json={"max_skew": "lots"}, headers=api.admin)
    assert bad.status_code == 422
    assert "max_skew" in bad.text
    too_many = api.client.post(url, json={"concurrency": 17}, headers=api.admin)
    assert too_many.status_code == 422
    reader = api.client.post(url, json={}, headers=api.store_key(slugs[0]))
    assert reader.status_code == 403

    planned = api.client.post(url, json={"max_skew": "0", "dry_run": True}, headers=api.admin)

    assert planned.status_code == 200, planned.text
    plan = planned.json()
    assert (plan["operation_id"], plan["skew_before"], plan["skew_after"]) == (None, 4, 0)
    assert [m["to"] for m in plan["moves"]] == ["new", "new"]
    with api.platform.sessions() as session:
        assert list_moves(session) == []  # a dry run records nothing

    accepted = api.client.post(url, json={"max_skew": "0", "concurrency": 2}, headers=api.admin)

    assert accepted.status_code == 202, accepted.text
    body = accepted.json()
    assert body["status_url"] == f"/operations/{body['operation_id']}"
    assert accepted.headers["Location"] == body["status_url"]
    assert len(body["moves"]) == 2
    done = _wait(api, body["status_url"], {"succeeded", "failed", "cancelled"})
    assert done["status"] == "succeeded", done
    assert (done["kind"], done["progress"]["current"], done["progress"]["total"]) == (
        "rebalance",
        2,
        2,
    )
    assert done["progress"]["unit"] == "databases"
    children = api.client.get(
        "/operations", params={"parent": body["operation_id"]}, headers=api.admin
    ).json()["items"]
    assert sorted(c["kind"] for c in children) == ["move", "move"]
    assert {c["status"] for c in children} == {"succeeded"}
    listed = {s["name"]: s for s in api.client.get("/database-servers", headers=api.admin).json()}
    assert (listed["old"]["tenants"], listed["new"]["tenants"]) == (2, 2)

    again = api.client.post(url, json={"max_skew": "0"}, headers=api.admin)
    assert again.status_code == 200, again.text  # within the skew: nothing to run
    assert (again.json()["operation_id"], again.json()["moves"]) == (None, [])
    assert PG_PASSWORD not in accepted.text
