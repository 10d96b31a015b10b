"""Status routes at 10,000 stores, page by page, each page well under a second; admin keys
only. ``GET /fleet/status``: whole counts, the lagging stores a page at a time (``limit``,
``cursor``, ``next_cursor``); ``GET /backups/status``: master, billing, then the stores a
page at a time (``X-Next-Cursor``)."""

from __future__ import annotations

import time

from tenantry.db import migrations
from tests.api.conftest import Api
from tests.master_rows import seed_stores, slug_of

STORES = 10_000
PAGE_S = 1.0


def test_fleet_status_pages_over_http(api: Api) -> None:
    head = migrations.head(api.platform.tenant_spec)
    assert head is not None
    seed_stores(api.platform.sessions, STORES, head=head, behind_every=10)
    lagging = [slug_of(n) for n in range(0, STORES, 10)]

    first = api.client.get("/fleet/status", headers=api.admin)
    assert first.status_code == 200, first.text
    doc = first.json()
    assert (doc["total"], doc["lagging_total"], doc["failed_total"]) == (STORES, 1000, 0)
    assert doc["per_revision"] == {head: STORES - 1000, "old": 1000}
    assert (doc["head"], doc["limit"], len(doc["lagging"])) == (head, 100, 100)
    assert doc["next_cursor"] == lagging[99]

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 300}
        if cursor is not None:
            params["cursor"] = cursor
        started = time.perf_counter()
        page = api.client.get("/fleet/status", params=params, headers=api.admin)
        took = time.perf_counter() - started
        assert page.status_code == 200, page.text
        assert took < PAGE_S, f"a page took {took:.2f} s with {STORES} stores"
        body = page.json()
        seen += body["lagging"]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            assert len(body["lagging"]) == 100  # 1,000 = 3 * 300 + 100
            break
        assert len(body["lagging"]) == 300
    assert pages == 4
    assert seen == lagging  # every lagging store exactly once, in slug order

    for bad in ({"limit": 0}, {"limit": 1001}, {"cursor": "x" * 64}):
        refused = api.client.get("/fleet/status", params=bad, headers=api.admin)
        assert refused.status_code == 422, (bad, refused.text)
    assert api.client.get("/fleet/status").status_code == 401
    store_key = api.store_key(slug_of(1))
    assert api.client.get("/fleet/status", headers=store_key).status_code == 403


def test_backup_status_pages_over_http(api: Api) -> None:
    head = migrations.head(api.platform.tenant_spec)
    assert head is not None
    seed_stores(api.platform.sessions, STORES, head=head)

    # The process's first request (lazy imports, caches) is not what a page costs.
    small = api.client.get("/backups/status", params={"limit": 2}, headers=api.admin)
    assert [r["scope"] for r in small.json()] == [
        "master",
        "billing",
        f"store:{slug_of(0)}",
        f"store:{slug_of(1)}",
    ]
    assert small.headers["X-Next-Cursor"] == slug_of(1)

    seen: list[str] = []
    times: list[float] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 500}
        if cursor is not None:
            params["cursor"] = cursor
        started = time.perf_counter()
        page = api.client.get("/backups/status", params=params, headers=api.admin)
        took = time.perf_counter() - started
        assert page.status_code == 200, page.text
        times.append(took)
        rows = page.json()
        assert all(r["backup_due"] and not r["protected"] for r in rows)
        seen += [r["scope"] for r in rows]
        pages += 1
        cursor = page.headers.get("X-Next-Cursor")
        if cursor is None:
            break
        assert cursor == rows[-1]["scope"].removeprefix("store:")
    assert pages == 20
    assert max(times) < PAGE_S, [round(t, 2) for t in times]
    assert seen == ["master", "billing", *(f"store:{slug_of(n)}" for n in range(STORES))]
    refused = api.client.get("/backups/status", params={"limit": 501}, headers=api.admin)
    assert refused.status_code == 422
    whole = api.client.get("/backups/status", headers=api.admin)  # the default: a page of 500
    assert (len(whole.json()), whole.headers["X-Next-Cursor"]) == (502, slug_of(499))
