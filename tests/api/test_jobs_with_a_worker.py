"""The API with a real queue and a real worker process (not the in-process dispatcher): a
provisioning job is seen queued while no worker runs, then running with its progress, then
completed, and the store serves requests."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tenantry.api.app import create_app
from tenantry.runtime import Platform, open_dispatcher
from tenantry.services import apikeys
from tenantry.settings import Settings
from tests.helpers import running_worker
from tests.platform_fixtures import platform, settings

__all__ = ["platform", "settings"]


def test_a_job_is_queued_then_running_then_completed_by_a_worker(
    settings: Settings, platform: Platform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The worker pauses before seeding, so the job is surely seen running.
    monkeypatch.setenv("TENANTRY_FAILPOINTS", "provision.seed=sleep:1.5")
    with platform.sessions.begin() as session:
        admin = apikeys.create_key(
            session, name="admin", scope=apikeys.Scope.ADMIN, actor="cli:test"
        )
    headers = {"Authorization": f"Bearer {admin.plaintext}"}
    queue = open_dispatcher(settings)
    try:
        with TestClient(create_app(settings, dispatcher=queue)) as client:
            made = client.post("/stores", json={"slug": "queued", "name": "Q"}, headers=headers)
            assert made.status_code == 201, made.text
            accepted = client.post("/stores/queued/provision", json={}, headers=headers)
            assert accepted.status_code == 202, accepted.text
            assert accepted.json()["status"] == "queued"
            status_url = accepted.json()["status_url"]
            time.sleep(0.5)  # nobody works on it: it stays queued
            waiting = client.get(status_url, headers=headers).json()
            assert (waiting["status"], waiting["progress"]) == ("queued", 0)
            assert client.get("/stores/queued", headers=headers).json()["status"] != "active"

            seen: list[tuple[str, int]] = []
            with running_worker(tmp_path / "worker.log"):
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    job = client.get(status_url, headers=headers).json()
                    seen.append((job["status"], job["progress"]))
                    if job["status"] in {"completed", "failed", "cancelled"}:
                        break
                    time.sleep(0.1)
            assert seen[-1][0] == "completed", (seen, (tmp_path / "worker.log").read_text())
            running = [progress for status, progress in seen if status == "running"]
            assert running, seen
            assert 0 < max(running) < 100  # progress reported while it ran
            assert seen[-1][1] == 100
            product = client.post(
                "/stores/queued/products", json={"sku": "A1", "name": "A"}, headers=headers
            )
            assert product.status_code == 201, product.text
    finally:
        queue.close()
