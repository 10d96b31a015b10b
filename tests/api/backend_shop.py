"""A provisioned store whose database is on each backend in turn, over HTTP (a fixture shared
by API test modules: import ``shop`` and name it in the module's ``__all__``)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import Api
from tests.conftest import SERVER_URLS, require_server


@pytest.fixture(params=("sqlite", "postgresql", "mysql"))
def shop(request: pytest.FixtureRequest, api: Api, server_slug: str) -> str:
    """A provisioned store (slug) with its database on the backend under test."""
    body: dict[str, Any] = {"mode": "create_new"}
    if request.param != "sqlite":
        require_server(request.param)
        added = api.client.post(
            "/database-servers",
            json={"name": "db1", "url": SERVER_URLS[request.param]},
            headers=api.admin,
        )
        assert added.status_code == 201, added.text
        body["server"] = "db1"
    result = api.provisioned_store(server_slug, **body)
    assert result["job"]["status"] == "completed", result["job"]
    return server_slug
