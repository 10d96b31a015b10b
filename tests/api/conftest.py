"""An API client on a fresh installation; durable work runs inside the request (in-process)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tenantry.api.app import create_app
from tenantry.operations import process_webhooks
from tenantry.operations.dispatch import InProcessDispatcher
from tenantry.runtime import Platform
from tenantry.services import apikeys, stores
from tenantry.services.billing import webhook_secrets
from tenantry.settings import Settings, load_settings
from tests import stripe_events
from tests.conftest import DbFactory
from tests.platform_fixtures import ENV_VARS, install, platform, settings
from tests.scratch_cleanup import drop_scratch_databases

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
            new = apikeys.create_key(
                session, name="t", scope=apikeys.Scope.STORE, store=store, actor="cli:test"
            )
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


@contextmanager
def open_api(settings: Settings, platform: Platform) -> Iterator[Api]:
    """A client on the installation ``platform`` opened, with an admin key."""
    dispatcher = InProcessDispatcher(settings)
    with platform.sessions.begin() as session:
        admin = apikeys.create_key(
            session, name="admin", scope=apikeys.Scope.ADMIN, actor="cli:test"
        )
    with TestClient(create_app(settings, dispatcher=dispatcher)) as client:
        yield Api(client, {"Authorization": f"Bearer {admin.plaintext}"}, platform)
    dispatcher.close()


@pytest.fixture
def api(settings: Settings, platform: Platform) -> Iterator[Api]:
    """A client on the installation, with an admin key."""
    with open_api(settings, platform) as opened:
        yield opened


@dataclass
class BillingApi:
    """A client with an app key for app ``acme`` (and one for ``globex``), billing on a
    database of the backend under test, and a Stripe signing secret for both apps."""

    client: TestClient
    platform: Platform
    acme: dict[str, str]
    globex: dict[str, str]
    secret: str

    def signed(
        self, payload: dict[str, Any], *, at: int | None = None, secret: str | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """A body and Stripe-Signature header made here, independently of tenantry."""
        return stripe_events.signed(payload, secret or self.secret, at=at)

    def deliver(self, app: str, payload: dict[str, Any]) -> Any:
        body, headers = self.signed(payload)
        return self.client.post(f"/webhooks/stripe/{app}", content=body, headers=headers)

    def process(self) -> int:
        return process_webhooks.process_pending(self.platform.billing_sessions)


@pytest.fixture
def billing_api(
    backend: str, new_database: DbFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[BillingApi]:
    """The API with its billing database on ``backend``."""
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TENANTRY_DATA_DIR", str(tmp_path / "data"))
    if backend != "sqlite":
        url = new_database("billing", create=False)
        monkeypatch.setenv("DATABASE_URL_BILLING", url.render_as_string(hide_password=False))
    current = load_settings()
    install(current)
    opened = Platform.open(current)
    secret = "whsec_" + "s3cr3t" * 4
    with opened.sessions.begin() as session:
        acme = apikeys.create_key(
            session, name="acme", scope=apikeys.Scope.APP, app_id="acme", actor="cli:test"
        )
        globex = apikeys.create_key(
            session, name="globex", scope=apikeys.Scope.APP, app_id="globex", actor="cli:test"
        )
    with opened.billing_sessions.begin() as session:
        for app in ("acme", "globex"):
            webhook_secrets.add_secret(session, opened.box, app, "stripe", secret, actor="cli:test")
    dispatcher = InProcessDispatcher(current)
    with TestClient(create_app(current, dispatcher=dispatcher)) as client:
        yield BillingApi(
            client,
            opened,
            {"Authorization": f"Bearer {acme.plaintext}"},
            {"Authorization": f"Bearer {globex.plaintext}"},
            secret,
        )
    dispatcher.close()
    opened.close()
    drop_scratch_databases(current)  # a worker's scheduler may have been restore-testing
