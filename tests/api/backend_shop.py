"""A provisioned store whose database is on each backend in turn, over HTTP (a fixture shared
by API test modules: import ``shop`` and name it in the module's ``__all__``), and the two
steps it is made of, for fixtures that make several."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import Api
from tests.conftest import SERVER_URLS, require_server


def provisioning_on(api: Api, backend: str) -> dict[str, Any]:
    """The provisioning request that puts a new store's database on ``backend``: a file for
    SQLite, else on the backend's test server, registered here as ``db1``."""
    body: dict[str, Any] = {"mode": "create_new"}
    if backend != "sqlite":
        require_server(backend)
        added = api.client.post(
            "/database-servers",
            json={"name": "db1", "url": SERVER_URLS[backend]},
            headers=api.admin,
        )
        assert added.status_code == 201, added.text
        body["server"] = "db1"
    return body


def provisioned(api: Api, slug: str, body: dict[str, Any]) -> str:
    """Store ``slug`` created and provisioned with ``body``, its job completed; its slug."""
    result = api.provisioned_store(slug, **body)
    assert result["job"]["status"] == "completed", result["job"]
    return slug


@pytest.fixture(params=("sqlite", "postgresql", "mysql"))
def shop(request: pytest.FixtureRequest, api: Api, server_slug: str) -> str:
    """A provisioned store (slug) with its database on the backend under test."""
    return provisioned(api, server_slug, provisioning_on(api, request.param))
