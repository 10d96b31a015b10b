"""An API client on a fresh installation; provisioning runs inline (Huey immediate mode)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tenantry.api.app import create_app
from tenantry.jobs.queue import Queue
from tenantry.runtime import Platform
from tenantry.services import apikeys, stores
from tenantry.settings import Settings
from tests.platform_fixtures import platform, settings

__all__ = ["platform", "settings"]


@dataclass
class Api:
    """A test client with an admin key, and helpers that read like the API's use."""

    client: TestClient
    admin: dict[str, str]
    platform: Platform

    def as_key(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    def store_key(self, slug: str) -> dict[str, str]:
        with self.platform.sessions.begin() as session:
            store = stores.get_store(session, slug)
            new = apikeys.create_key(session, name="t", scope=apikeys.Scope.STORE, store=store)
        return self.as_key(new.plaintext)

    def provisioned_store(self, slug: str, **provision: Any) -> dict[str, Any]:
        created = self.client.post(
            "/stores", json={"slug": slug, "name": slug.title()}, headers=self.admin
        )
        assert created.status_code == 201, created.text
        accepted = self.client.post(
            f"/stores/{slug}/provision", json=provision or {}, headers=self.admin
        )
        assert accepted.status_code == 202, accepted.text
        job = self.client.get(accepted.json()["status_url"], headers=self.admin).json()
        return {"store": created.json(), "job": job}


@pytest.fixture
def api(settings: Settings, platform: Platform) -> Iterator[Api]:
    """A client on the installation, with an admin key."""
    queue = Queue(settings, immediate=True)
    with platform.sessions.begin() as session:
        admin = apikeys.create_key(session, name="admin", scope=apikeys.Scope.ADMIN)
    with TestClient(create_app(settings, queue=queue)) as client:
        yield Api(client, {"Authorization": f"Bearer {admin.plaintext}"}, platform)
    queue.close()
