"""A server killed with SIGKILL under load loses no event it answered 2xx."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from tenantry.db.billing.models import BillingWebhook
from tenantry.runtime import Platform
from tenantry.services.billing import webhook_secrets
from tenantry.settings import load_settings
from tests.conftest import DbFactory
from tests.helpers import free_port, wait_until_healthy
from tests.platform_fixtures import ENV_VARS, install
from tests.stripe_events import stripe_headers

SECRET = "whsec_durability_secret"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql", "mysql"], indirect=True)
def test_sigkill_under_load_loses_no_acknowledged_event(
    backend: str, new_database: DbFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TENANTRY_DATA_DIR", str(tmp_path / "data"))
    if backend != "sqlite":
        url = new_database("billing", create=False)
        monkeypatch.setenv("DATABASE_URL_BILLING", url.render_as_string(hide_password=False))
    settings = load_settings()
    install(settings)
    platform = Platform.open(settings)
    with platform.billing_sessions.begin() as session:
        webhook_secrets.add_secret(
            session, platform.box, "acme", "stripe", SECRET, actor="cli:test"
        )
    port = free_port()
    log = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "tenantry.api.app:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=os.environ.copy(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    acknowledged: list[str] = []
    stop = threading.Event()
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", server, tmp_path / "server.log")

        def client() -> None:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
                while not stop.is_set():
                    event_id = f"evt_{uuid.uuid4().hex}"
                    body = json.dumps(
                        {
                            "id": event_id,
                            "type": "payment_intent.succeeded",
                            "created": int(time.time()),
                            "data": {
                                "object": {
                                    "id": f"pi_{event_id[4:]}",
                                    "amount": 100,
                                    "currency": "usd",
                                    "metadata": {},
                                }
                            },
                        }
                    ).encode()
                    try:
                        answer = http.post(
                            "/webhooks/stripe/acme",
                            content=body,
                            headers=stripe_headers(body, SECRET),
                        )
                    except httpx.TransportError:
                        return  # the server died under us: this event was not acknowledged
                    if answer.status_code == 200:
                        acknowledged.append(event_id)

        clients = [threading.Thread(target=client) for _ in range(6)]
        for c in clients:
            c.start()
        deadline = time.monotonic() + 30
        while len(acknowledged) < 150 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(server.pid, signal.SIGKILL)  # mid-load, no shutdown of any kind
        stop.set()
        for c in clients:
            c.join(timeout=10)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=10)
        log.close()
    assert len(acknowledged) >= 150
    with platform.billing_sessions() as session:
        stored = set(session.scalars(select(BillingWebhook.event_id)))
    platform.close()
    lost = [e for e in acknowledged if e not in stored]
    assert lost == []
