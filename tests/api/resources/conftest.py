"""Stores whose databases live on the backend under test, for the declared resources."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.api.conftest import Api
from tests.conftest import SERVER_URLS, require_server

#: Makes a provisioned store (its slug) on the backend under test.
ShopFactory = Callable[[str], str]


@pytest.fixture(params=("sqlite", "postgresql", "mysql"))
def new_shop(request: pytest.FixtureRequest, api: Api, server_slug: str) -> ShopFactory:
    """A factory of provisioned stores whose databases are on the backend under test; its
    argument is appended to the test's own slug (so the test servers get cleaned)."""
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

    def make(suffix: str) -> str:
        slug = f"{server_slug}-{suffix}"
        result = api.provisioned_store(slug, **body)
        assert result["job"]["status"] == "completed", result["job"]
        return slug

    return make
