"""The console's fleet verify is a bounded action: past its limit of tenant databases it is
refused beside its form, naming the count and the CLI command, and no database is opened.
In-process (the app over a real SQLite installation), the limit lowered for the test."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tenantry.api.app import create_app
from tenantry.api.deps import SESSION_COOKIE
from tenantry.console.pages import fleet
from tenantry.db.master.models import DatabaseStatus, UserRole
from tenantry.operations import api_access
from tenantry.runtime import Platform
from tenantry.services import stores, users
from tenantry.services.login_sessions import csrf_token
from tenantry.settings import Settings
from tests.platform_fixtures import platform, settings

__all__ = ["platform", "settings"]


def test_verify_past_its_limit_is_refused_beside_its_form(
    settings: Settings, platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    with platform.writer_sessions.begin() as session:
        for n in range(3):
            store = stores.create_store(session, slug=f"v-{n}", name="V", actor="test")
            # Recorded active on a database that does not exist: opening it would fail.
            store.database_status = DatabaseStatus.ACTIVE
            store.schema_revision = "0001"
        users.add_user(
            session,
            email="op@example.com",
            password="pw-1234567890",
            role=UserRole.OPERATOR,
            actor="test",
        )
    signed = api_access.login(
        platform.writer_sessions,
        "op@example.com",
        "pw-1234567890",
        ip_address="127.0.0.1",
        user_agent="test",
    )
    monkeypatch.setattr(fleet, "VERIFY_AT_MOST", 2)
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        client.cookies.set(SESSION_COOKIE, signed.token)
        answer: Any = client.post(
            "/console/fleet/verify", data={"csrf_token": csrf_token(signed.token)}
        )
    assert answer.status_code == 200  # the fleet page again, the error beside the button
    assert 'id="error-verify"' in answer.text
    assert "the fleet has 3 tenant databases; the console verifies at most 2" in answer.text
    assert "tenantry fleet status --verify" in answer.text
    assert 'id="verify-result"' not in answer.text
