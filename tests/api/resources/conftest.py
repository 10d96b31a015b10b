"""Stores whose databases live on the backend under test, for the declared resources."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.api.backend_shop import provisioned, provisioning_on
from tests.api.conftest import Api

#: Makes a provisioned store (its slug) on the backend under test.
ShopFactory = Callable[[str], str]


@pytest.fixture(params=("sqlite", "postgresql", "mysql"))
def new_shop(request: pytest.FixtureRequest, api: Api, server_slug: str) -> ShopFactory:
    """A factory of provisioned stores whose databases are on the backend under test; its
    argument is appended to the test's own slug (so the test servers get cleaned)."""
    body = provisioning_on(api, request.param)

    def make(suffix: str) -> str:
        return provisioned(api, f"{server_slug}-{suffix}", body)

    return make
