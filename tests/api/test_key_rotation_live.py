"""`tenantry keys rotate --retire-old` while the API and a real worker keep running.

The API (FastAPI TestClient, its own platform) and a `tenantry worker` process load the keys
at start. While the rotation runs in its own process, the test keeps calling a store's data
(its engine was opened with a sealed password), keeps delivering webhooks verified with a
sealed signing secret, and keeps provisioning stores on a registered server whose sealed
admin URL the worker opens and whose new database password it seals. Every request succeeds
(or answers the documented retryable 503), every job completes, and once rotation is over the
key file holds the new key only and every stored secret opens with it alone, also in the
processes that were running before the rotation (new stores, webhook secrets read again
after their cache expires).

Master and billing are on SQLite, then on PostgreSQL; tenants always live on the PostgreSQL
server (trust authentication accepts the password, so a wrongly decrypted one would still
connect: what fails here is decryption itself).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet, MultiFernet
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import select

from tenantry.api.app import create_app
from tenantry.crypto import SecretBox, raw_keys
from tenantry.db import logins
from tenantry.db.admin import drop_database
from tenantry.db.master.models import Store
from tenantry.db.urls import parse_url
from tenantry.runtime import Platform, open_dispatcher
from tenantry.services import apikeys, provisioning, runtime_access, stores
from tenantry.services.billing import webhook_secrets
from tenantry.services.key_rotation import sealed_schemas, unreadable
from tenantry.settings import Settings, load_settings
from tests.conftest import SERVER_URLS, require_server
from tests.helpers import running_worker
from tests.platform_fixtures import ENV_VARS, install
from tests.scratch_cleanup import drop_scratch_databases
from tests.stripe_events import signed

SIGNING_SECRET = "whsec_" + uuid.uuid4().hex
TENANT_PASSWORD = "pw-" + uuid.uuid4().hex[:12]


@dataclass
class Live:
    """The installation, its platform (for setup and checks) and what it made on servers."""

    settings: Settings
    platform: Platform
    tenant_databases: list[str] = field(default_factory=list)


@pytest.fixture(params=["sqlite", "postgresql"])
def live(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Live]:
    require_server("postgresql")  # the tenants' server, whatever master and billing are on
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TENANTRY_DATA_DIR", str(tmp_path / "data"))
    made = []
    if request.param == "postgresql":
        for var, label in (("DATABASE_URL", "master"), ("DATABASE_URL_BILLING", "billing")):
            url = parse_url(SERVER_URLS["postgresql"]).set(
                database=f"tt_{label}_{uuid.uuid4().hex[:10]}"
            )
            made.append(url)
            monkeypatch.setenv(var, url.render_as_string(hide_password=False))
    settings = load_settings()
    install(settings)
    platform = Platform.open(settings)
    state = Live(settings, platform)
    try:
        yield state
    finally:
        # The stores' runtime logins are server-wide: named from master (readable whatever
        # key the test left the secrets under), dropped with the server's admin URL.
        with platform.sessions() as session:
            made_logins = [
                login
                for store in session.scalars(select(Store))
                for login in runtime_access.store_logins(store.slug, store.id)
            ]
        platform.close()
        drop_scratch_databases(settings)  # the worker's scheduler may have been restore-testing
        server = parse_url(SERVER_URLS["postgresql"])
        for name in state.tenant_databases:
            drop_database(server.set(database=name))
        for login in made_logins:
            logins.drop_login(server, login)
        for url in made:
            drop_database(url)


class Traffic:
    """Requests a running deployment keeps getting; each answer is checked as it comes."""

    def __init__(self, client: TestClient, admin: dict[str, str], live: Live) -> None:
        self.client = client
        self.admin = admin
        self.live = live
        self.keys: dict[str, dict[str, str]] = {}  # slug -> its store key's header
        self.jobs: dict[str, str] = {}  # slug -> job status URL
        self.retried = 0
        self.answers = 0

    def call(self, method: str, path: str, **kw: Any) -> Response:
        """One request; a 503 (documented as retryable, with Retry-After) is retried."""
        deadline = time.monotonic() + 30
        while True:
            answer: Response = self.client.request(method, path, **kw)
            self.answers += 1
            if answer.status_code != 503:
                return answer
            assert "Retry-After" in answer.headers, answer.text
            assert time.monotonic() < deadline, f"{path}: 503 for 30 s: {answer.text}"
            self.retried += 1
            time.sleep(0.2)

    def provision(self, slug: str) -> None:
        made = self.call("POST", "/stores", json={"slug": slug, "name": slug}, headers=self.admin)
        assert made.status_code == 201, made.text
        accepted = self.call(
            "POST",
            f"/stores/{slug}/provision",
            json={"mode": "create_new", "server": "pg"},
            headers=self.admin,
        )
        assert accepted.status_code == 202, accepted.text
        self.jobs[slug] = accepted.json()["status_url"]
        with self.live.platform.sessions() as session:
            store = stores.get_store(session, slug)
            self.live.tenant_databases.append(provisioning.tenant_database_name(store))

    def finished(self, slug: str) -> bool:
        """Whether the store's job is over; it must have completed."""
        job = self.call("GET", self.jobs[slug], headers=self.admin)
        assert job.status_code == 200, job.text
        status = job.json()["status"]
        assert status in {"queued", "running", "completed"}, job.json()
        if status != "completed":
            return False
        if slug not in self.keys:
            with self.live.platform.writer_sessions.begin() as session:
                store = stores.get_store(session, slug)
                key = apikeys.create_key(
                    session, name=slug, scope=apikeys.Scope.STORE, store=store, actor="cli:test"
                )
            self.keys[slug] = {"Authorization": f"Bearer {key.plaintext}"}
        return True

    def read_store(self, slug: str) -> None:
        """The store's data: the API opens its database with the sealed password."""
        answer = self.call("GET", f"/stores/{slug}/products", headers=self.keys[slug])
        assert answer.status_code == 200, (slug, answer.text)

    def webhook(self) -> None:
        """A delivery verified with the sealed signing secret."""
        event = {
            "id": f"evt_{uuid.uuid4().hex}",
            "object": "event",
            "type": "customer.created",
            "created": int(time.time()),
            "data": {"object": {"id": f"cus_{uuid.uuid4().hex[:10]}", "object": "customer"}},
        }
        body, headers = signed(event, SIGNING_SECRET)
        answer = self.call("POST", "/webhooks/stripe/acme", content=body, headers=headers)
        assert answer.status_code == 200, answer.text
        assert answer.json()["duplicate"] is False

    def round(self) -> None:
        for slug in list(self.keys):
            self.read_store(slug)
        self.webhook()

    def wait_for_jobs(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not all(self.finished(slug) for slug in self.jobs):
            assert time.monotonic() < deadline, f"jobs not completed in {seconds} s"
            self.round()
            time.sleep(0.2)


def test_rotation_with_retire_old_while_api_and_worker_run(live: Live, tmp_path: Path) -> None:
    settings = live.settings
    with live.platform.sessions.begin() as session:
        admin = apikeys.create_key(
            session, name="admin", scope=apikeys.Scope.ADMIN, actor="cli:test"
        )
    with live.platform.billing_sessions.begin() as session:
        webhook_secrets.add_secret(
            session, live.platform.box, "acme", "stripe", SIGNING_SECRET, actor="cli:test"
        )
    old_keys, _ = raw_keys(settings)
    log = tmp_path / "worker.log"
    queue = open_dispatcher(settings)
    with running_worker(log), TestClient(create_app(settings, dispatcher=queue)) as client:
        traffic = Traffic(client, {"Authorization": f"Bearer {admin.plaintext}"}, live)
        server_url = parse_url(SERVER_URLS["postgresql"]).set(password=TENANT_PASSWORD)
        added = traffic.call(
            "POST",
            "/database-servers",
            json={"name": "pg", "url": server_url.render_as_string(hide_password=False)},
            headers=traffic.admin,
        )
        assert added.status_code == 201, added.text
        traffic.provision("before")
        traffic.wait_for_jobs(90)
        traffic.round()

        rotation = subprocess.Popen(
            [sys.executable, "-m", "tenantry", "keys", "rotate", "--retire-old", "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=os.environ.copy(),
        )
        n = 0
        try:
            while rotation.poll() is None:
                if n < 3:  # new stores keep being asked for while the keys change
                    traffic.provision(f"during-{n}")
                    n += 1
                traffic.round()
            out, err = rotation.communicate(timeout=60)
        finally:
            if rotation.poll() is None:
                rotation.kill()
                rotation.wait()
        assert n >= 1  # stores were being provisioned while the keys changed
        if rotation.returncode == 2 and "sealed meanwhile" in out:
            # The documented refusal, and what it protects against: a job sealed a secret
            # under the old key just before the key file changed and committed it after the
            # reseal, so retiring that key now would lose it. The old keys were kept; as the
            # hint says, once that work is done a second run finishes.
            traffic.wait_for_jobs(90)
            again = subprocess.run(
                [sys.executable, "-m", "tenantry", "keys", "rotate", "--retire-old", "--json"],
                capture_output=True,
                text=True,
                env=os.environ.copy(),
                timeout=120,
            )
            out, err = again.stdout, again.stderr
            assert again.returncode == 0, (out, err, log.read_text())
        else:
            assert rotation.returncode == 0, (out, err, log.read_text())
        assert json.loads(out)["retired_old"] is True
        new_keys, _ = raw_keys(settings)
        assert len(new_keys) == 1
        assert new_keys[0] not in old_keys

        # After the rotation, in the processes started before it: new stores are provisioned
        # (the worker opens the resealed admin URL), every store is read, and webhooks keep
        # being verified once the API's cached signing secrets have expired.
        traffic.provision("after")
        traffic.wait_for_jobs(120)
        until = time.monotonic() + webhook_secrets.SECRET_CACHE_S + 1
        while time.monotonic() < until:
            traffic.round()
            time.sleep(0.2)
        assert set(traffic.keys) == {"before", "after", *(f"during-{i}" for i in range(n))}
    queue.close()

    only_new = SecretBox(MultiFernet([Fernet(new_keys[0])]))
    sessions = {"master": live.platform.sessions, "billing": live.platform.billing_sessions}
    for spec in sealed_schemas():
        with sessions[spec.role.value]() as session:
            assert unreadable(session, only_new, spec) == {}, spec.role.value
    assert not only_new.can_open(SecretBox(MultiFernet([Fernet(k) for k in old_keys])).seal("x"))
