"""Concurrent writes to one store's SQLite database all land: a write request takes the
file's write lock when its transaction begins, so a write that first reads (the plan's
product limit, the sku check) waits its turn behind another writer instead of failing at
once with "database is locked" (SQLite cannot upgrade a read snapshot another writer has
moved past, and its busy timeout does not cover that case).

Master is on each backend in turn: on SQLite master's own write lock already puts write
requests in a line; on a server nothing else does, which is how production runs."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tenantry.runtime import Platform
from tests.api.conftest import Api, open_api
from tests.platform_fixtures import backend_platform

__all__ = ["backend_platform"]

WRITERS = 8
EACH = 12


@pytest.fixture
def api_on_backend(backend_platform: Platform) -> Iterator[Api]:
    """The API on an installation whose master and billing are on ``backend``."""
    with open_api(backend_platform.settings, backend_platform) as opened:
        yield opened


def test_concurrent_product_writes_to_one_sqlite_store_all_succeed(api_on_backend: Api) -> None:
    api = api_on_backend
    api.provisioned_store("busy-writes")  # a SQLite file: no server is named
    base = "/stores/busy-writes/products"

    def write(worker: int) -> list[tuple[int, str]]:
        answers = []
        for n in range(EACH):
            body = {"sku": f"W{worker}-{n}", "name": f"W{worker}-{n}", "price_minor": 100}
            answer = api.client.post(base, json=body, headers=api.admin)
            answers.append((answer.status_code, answer.text[:200]))
        return answers

    with ThreadPoolExecutor(WRITERS) as pool:
        answers = [a for batch in pool.map(write, range(WRITERS)) for a in batch]
    refused = [a for a in answers if a[0] != 201]
    assert refused == [], f"{len(refused)} of {len(answers)} writes refused, e.g. {refused[:3]}"
    listed = api.client.get(base, params={"limit": 500}, headers=api.admin).json()
    assert sorted(p["sku"] for p in listed) == sorted(
        f"W{w}-{n}" for w in range(WRITERS) for n in range(EACH)
    )
