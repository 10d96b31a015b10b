"""`tenantry apikeys` and `tenantry keys` (rotation of the keys that seal stored secrets)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from sqlalchemy import delete, func, select, text
from sqlalchemy.engine import URL

from tenantry.api.app import create_app
from tenantry.crypto import SecretBox, load_keys, sealed_columns
from tenantry.db.admin import create_database, drop_database
from tenantry.db.billing.models import BillingProcessorSecret
from tenantry.db.engines import make_engine
from tenantry.db.master.models import ProvisioningJob
from tenantry.db.master.models.spares import SpareDatabase, SpareStatus
from tenantry.db.schemas import Role, billing_schema, master_schema
from tenantry.db.urls import parse_url
from tenantry.jobs.queue import Queue
from tenantry.operations.dispatch import InProcessDispatcher
from tenantry.runtime import Platform
from tenantry.services import server_pooler, servers
from tenantry.services.key_rotation import record_rotation, unreadable
from tenantry.settings import load_settings
from tests.cli.conftest import Invoke, as_json, process_env
from tests.conftest import SERVER_URLS, DbFactory, require_server
from tests.fixtures import shared_shop
from tests.imports.fixtures import MAPPING, shop_prefix
from tests.stripe_events import signed

__all__ = ["shop_prefix"]  # a fixture, imported to be found

SECRET_URL = "postgresql://shop:s3cret-pw@127.0.0.1:1/shop"


def _key_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip()]


def _queued_job_secret(env: dict[str, str] | None = None) -> str:
    """The password of the one job holding one, opened with the keys configured now."""
    settings = load_settings(**({"secret_keys": env["TENANTRY_SECRET_KEYS"]} if env else {}))
    platform = Platform.open(settings)
    try:
        with platform.sessions() as session:
            job = session.scalars(
                select(ProvisioningJob).where(ProvisioningJob.secret_encrypted.is_not(None))
            ).one()
            assert job.secret_encrypted is not None
            return SecretBox.from_settings(settings).open(job.secret_encrypted)
    finally:
        platform.close()


def test_admin_key_is_shown_once(cli: Invoke) -> None:
    assert cli("init").exit_code == 0
    created = cli("apikeys", "create", "--admin", "--name", "ops", "--json")
    assert created.exit_code == 0, created.output
    doc = as_json(created)
    assert doc["scope"] == "admin"
    key = doc["key"]
    assert key.startswith(f"tnt_{doc['prefix']}_")

    human = cli("apikeys", "create", "--app", "portal")
    assert human.exit_code == 0
    assert "shown once" in human.stdout

    listed = cli("apikeys", "list", "--json")
    assert listed.exit_code == 0
    keys = as_json(listed)
    assert {k["scope"] for k in keys} == {"admin", "app"}
    assert key not in listed.output
    # The secret part may itself hold '_' (URL-safe base64): cut at the known prefix.
    secret = key.removeprefix(f"tnt_{doc['prefix']}_")
    assert len(secret) >= 32
    assert secret not in listed.output
    assert all("hash" not in field for k in keys for field in k)
    assert key not in cli("apikeys", "list").output

    revoked = cli("apikeys", "revoke", doc["prefix"], "--json")
    assert revoked.exit_code == 0, revoked.output
    after = {k["prefix"]: k for k in as_json(cli("apikeys", "list", "--json"))}
    assert after[doc["prefix"]]["revoked_at"] is not None

    assert cli("apikeys", "create").exit_code == 2
    assert cli("apikeys", "create", "--admin", "--app", "x").exit_code == 2
    assert cli("apikeys", "create", "--store", "no-such-store").exit_code == 1


def test_store_key_names_its_store(cli: Invoke) -> None:
    assert cli("init").exit_code == 0
    assert cli("stores", "create", "keyed", "--name", "K").exit_code == 0
    doc = as_json(cli("apikeys", "create", "--store", "keyed", "--json"))
    assert doc["scope"] == "store"
    listed = as_json(cli("apikeys", "list", "--json"))
    assert listed[0]["store"] == "keyed"


def test_rotate_with_key_file_keeps_every_secret_readable(cli: Invoke, tmp_path: Path) -> None:
    assert cli("init").exit_code == 0
    key_file = tmp_path / "data" / "secret.key"
    original = _key_lines(key_file)
    assert len(original) == 1
    assert cli("stores", "create", "sealed", "--name", "S").exit_code == 0
    assert cli("provision", "sealed", "--connect", SECRET_URL).exit_code == 0  # queued

    rotated = cli("keys", "rotate", "--json")
    assert rotated.exit_code == 0, rotated.output
    doc = as_json(rotated)
    assert doc["resealed"]["master"]["columns"]["provisioning_jobs.secret_encrypted"] == 1
    assert doc["resealed"]["total"] == 1
    keys = _key_lines(key_file)
    assert len(keys) == 2
    assert keys[1] == original[0]
    assert _queued_job_secret() == "s3cret-pw"

    retired = cli("keys", "rotate", "--retire-old")
    assert retired.exit_code == 0, retired.output
    assert "re-encrypted 1 secret(s)" in retired.stdout
    final = _key_lines(key_file)
    assert len(final) == 1
    assert final[0] not in keys
    assert _queued_job_secret() == "s3cret-pw"
    assert "s3cret-pw" not in rotated.output + retired.output


def test_rotate_keeps_servers_usable(cli: Invoke, tmp_path: Path) -> None:
    require_server("postgresql")
    assert cli("init").exit_code == 0
    added = cli("servers", "add", "pg", "--url", SERVER_URLS["postgresql"])
    assert added.exit_code == 0, added.output

    rotated = cli("keys", "rotate", "--json")
    assert rotated.exit_code == 0, rotated.output
    master = as_json(rotated)["resealed"]["master"]
    assert master["columns"]["database_servers.admin_url_encrypted"] == 1
    assert cli("servers", "check", "pg").exit_code == 0

    assert cli("keys", "rotate", "--retire-old").exit_code == 0
    assert len(_key_lines(tmp_path / "data" / "secret.key")) == 1
    checked = cli("servers", "check", "pg", "--json")
    assert checked.exit_code == 0, checked.output
    assert as_json(checked)["ok"] is True


def test_rotate_with_env_keys_generates_nothing(cli: Invoke, tmp_path: Path) -> None:
    old = Fernet.generate_key().decode()
    env = {"TENANTRY_SECRET_KEYS": old}
    assert cli("init", env=env).exit_code == 0
    assert not (tmp_path / "data" / "secret.key").exists()
    assert cli("stores", "create", "env-keys", "--name", "E", env=env).exit_code == 0
    assert cli("provision", "env-keys", "--connect", SECRET_URL, env=env).exit_code == 0

    generated = cli("keys", "generate")
    assert generated.exit_code == 0
    new = generated.stdout.strip()
    Fernet(new.encode())  # a valid key

    both = {"TENANTRY_SECRET_KEYS": f"{new},{old}"}
    rotated = cli("keys", "rotate", env=both)
    assert rotated.exit_code == 0, rotated.output
    assert "re-encrypted 1 secret(s)" in rotated.stdout
    assert "TENANTRY_SECRET_KEYS" in rotated.stdout
    assert not (tmp_path / "data" / "secret.key").exists()

    only_new = {"TENANTRY_SECRET_KEYS": new}
    assert _queued_job_secret(only_new) == "s3cret-pw"
    refused = cli("keys", "rotate", "--retire-old", env=only_new)
    assert refused.exit_code == 2


WEBHOOK_SECRET = "whsec_" + "R0tat3dK" * 4


def _admin_url(backend: str) -> str:
    raw = SERVER_URLS[backend]
    # MySQL servers are registered without a database, as users write them.
    return raw.rsplit("/", 1)[0] if backend == "mysql" and raw.count("/") > 2 else raw


def _signed_event(event_id: str) -> tuple[bytes, dict[str, str]]:
    """A Stripe event and its signature, made here independently of tenantry."""
    event = {
        "id": event_id,
        "object": "event",
        "type": "customer.created",
        "created": int(time.time()),
        "data": {"object": {"id": "cus_rotated", "object": "customer"}},
    }
    return signed(event, WEBHOOK_SECRET)


def _stored_tokens() -> dict[str, dict[str, int]]:
    """How many values each registered sealed column holds, per database."""
    settings = load_settings()
    platform = Platform.open(settings)
    counts: dict[str, dict[str, int]] = {}
    try:
        # Both roles named here, not taken from the registry under test.
        for spec in (master_schema(), billing_schema()):
            sessions = platform.sessions if spec.role == Role.MASTER else platform.billing_sessions
            with sessions() as session:
                counts[spec.role.value] = {
                    f"{c.table.name}.{c.name}": session.scalar(
                        select(func.count()).select_from(c.table).where(c.is_not(None))
                    )
                    or 0
                    for c in sealed_columns(spec.metadata)
                }
    finally:
        platform.close()
    return counts


def _unreadable_with_configured_keys() -> dict[str, dict[str, int]]:
    settings = load_settings()
    platform = Platform.open(settings)
    try:
        box = SecretBox.from_settings(settings)
        with platform.sessions() as master, platform.billing_sessions() as billing:
            return {
                "master": unreadable(master, box, master_schema()),
                "billing": unreadable(billing, box, billing_schema()),
            }
    finally:
        platform.close()


TENANT_PASSWORD = "T3nant-login-pw"


@pytest.fixture
def tenant_login() -> Iterator[Callable[[str], URL]]:
    """``make(backend)``: an empty database on ``backend``'s server and a URL reaching it
    through a login of its own with a password; both dropped after the test."""
    made: list[tuple[str, URL, str]] = []

    def make(backend: str) -> URL:
        suffix = uuid.uuid4().hex[:10]
        admin = parse_url(SERVER_URLS[backend])
        url = admin.set(database=f"tt_rot_{suffix}")
        user = f"tt_rot_{suffix}"
        create_database(url)
        made.append((backend, url, user))
        engine = make_engine(url if backend == "postgresql" else admin, pool_size=1)
        try:
            with engine.begin() as conn:
                if backend == "postgresql":
                    conn.execute(text(f"CREATE ROLE {user} LOGIN PASSWORD '{TENANT_PASSWORD}'"))
                    conn.execute(text(f"ALTER DATABASE {url.database} OWNER TO {user}"))
                    conn.execute(text(f"ALTER SCHEMA public OWNER TO {user}"))
                else:
                    conn.execute(
                        text(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{TENANT_PASSWORD}'")
                    )
                    conn.execute(text(f"GRANT ALL ON `{url.database}`.* TO '{user}'@'%'"))
        finally:
            engine.dispose()
        return url.set(username=user, password=TENANT_PASSWORD)

    yield make
    for backend, url, user in made:
        drop_database(url)
        engine = make_engine(parse_url(SERVER_URLS[backend]), pool_size=1)
        try:
            with engine.begin() as conn:
                if backend == "postgresql":
                    conn.execute(text(f"DROP ROLE IF EXISTS {user}"))
                else:
                    conn.execute(text(f"DROP USER IF EXISTS '{user}'@'%'"))
        finally:
            engine.dispose()


@pytest.mark.server
def test_retire_old_keeps_every_kind_of_secret_usable(
    cli: Invoke,
    backend: str,
    new_database: DbFactory,
    tenant_login: Callable[[str], URL],
    shop_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Master and billing on ``backend``: after `keys rotate --retire-old` the key file holds
    the new key only, and a tenant connection, a server admin URL, a webhook signing secret
    and a queued import's source all still work with it."""
    server_backend = "postgresql" if backend == "sqlite" else backend
    require_server(server_backend)
    if backend != "sqlite":
        for var, label in (("DATABASE_URL", "master"), ("DATABASE_URL_BILLING", "billing")):
            url = new_database(label, create=False)
            monkeypatch.setenv(var, url.render_as_string(hide_password=False))
    assert cli("init").exit_code == 0
    added = cli("servers", "add", "main-db", "--url", _admin_url(server_backend))
    assert added.exit_code == 0, added.output
    # A PgBouncer URL in front of a PostgreSQL server (never connected to here): sealed too.
    require_server("postgresql")
    pooled = cli(
        "servers", "add", "pooled-db", "--url", _admin_url("postgresql"),
        "--pooler-url", f"postgresql://stats:{POOLER_PASSWORD}@127.0.0.1:6432/postgres",
    )  # fmt: skip
    assert pooled.exit_code == 0, pooled.output
    slug = f"rot-{uuid.uuid4().hex[:8]}"
    assert cli("stores", "create", slug, "--name", "Rotated").exit_code == 0
    tenant_url = tenant_login(server_backend).render_as_string(hide_password=False)
    made = cli("provision", slug, "--connect", tenant_url, "--inline", "--wait")
    assert made.exit_code == 0, made.output
    assert cli("stores", "create", "queued", "--name", "Q").exit_code == 0
    assert cli("provision", "queued", "--connect", SECRET_URL).exit_code == 0
    secret = cli(
        "billing", "secrets", "add", "acme", "--processor", "stripe", "--secret", WEBHOOK_SECRET
    )
    assert secret.exit_code == 0, secret.output
    admin = as_json(cli("apikeys", "create", "--admin", "--name", "ops", "--json"))["key"]
    # A shared database imported by the workers: its URL waits sealed in master.
    shop = parse_url(f"sqlite:///{tmp_path / 'shop.db'}")
    # Its store's database and logins on the server are dropped by ``shop_prefix``.
    shared_shop.build_shared_shop(shop, stores_count=1, prefix=shop_prefix)
    queued_import = cli(
        "import", "shared", "--url", str(shop), "--map", str(MAPPING),
        "--create-stores", "--queue", "--json",
    )  # fmt: skip
    assert queued_import.exit_code == 0, queued_import.output
    (import_op,) = [o["operation_id"] for o in as_json(queued_import)["stores"]]
    # A spare database's login password, as a refill records it (no database behind the row:
    # this test proves the password is resealed; tests/operations/test_spare_pool.py claims
    # real spares).
    spare = _add_spare_row(SecretBox.from_settings(load_settings()).seal(SPARE_PASSWORD))
    stored = _stored_tokens()
    assert stored["billing"]["billing_processor_secrets.secret_encrypted"] == 1
    assert all(n >= 1 for n in stored["master"].values()), stored

    rotated = cli("keys", "rotate", "--retire-old", "--json")
    assert rotated.exit_code == 0, rotated.output
    resealed = as_json(rotated)["resealed"]
    for role, columns in stored.items():
        assert resealed[role]["columns"] == columns
        assert resealed[role]["total"] == sum(columns.values())
    assert resealed["total"] == sum(sum(c.values()) for c in stored.values())
    assert len(_key_lines(Path(load_settings().key_file))) == 1
    assert _unreadable_with_configured_keys() == {"master": {}, "billing": {}}
    assert _spare_password(spare) == SPARE_PASSWORD
    for shown in (rotated.output, cli("keys", "rotate", "--retire-old").output):
        assert WEBHOOK_SECRET not in shown
        assert "s3cret-pw" not in shown
        assert TENANT_PASSWORD not in shown
        assert POOLER_PASSWORD not in shown
    assert _pooler_password("pooled-db") == POOLER_PASSWORD

    # Server admin URL.
    checked = cli("servers", "check", "main-db", "--json")
    assert checked.exit_code == 0, checked.output
    assert as_json(checked)["ok"] is True
    # Queued job's password, tenant connection and webhook secret, through a new process's keys.
    assert _queued_job_secret() == "s3cret-pw"
    settings = load_settings()
    dispatcher = InProcessDispatcher(settings)
    try:
        with TestClient(create_app(settings, dispatcher=dispatcher)) as client:
            auth = {"Authorization": f"Bearer {admin}"}
            product = client.post(
                f"/stores/{slug}/products", json={"sku": "R1", "name": "Kept"}, headers=auth
            )
            assert product.status_code == 201, product.text
            listed = client.get(f"/stores/{slug}/products", headers=auth)
            assert [p["sku"] for p in listed.json()] == ["R1"]
            body, headers = _signed_event("evt_after_rotation")
            accepted = client.post("/webhooks/stripe/acme", content=body, headers=headers)
            assert accepted.status_code == 200, accepted.text
            assert accepted.json()["duplicate"] is False
        # The queued import's source, opened by a worker with the new key only.
        dispatcher.enqueue_import(uuid.UUID(import_op))
        shown = as_json(cli("ops", "show", import_op, "--json"))
        assert shown["status"] == "succeeded", shown.get("error")
    finally:
        dispatcher.close()


SPARE_PASSWORD = "spare-login-pw-5521"
POOLER_PASSWORD = "pooler-pw-7731"


def _pooler_password(name: str) -> str | None:
    """The password of server ``name``'s pooler URL, opened with the configured keys."""
    settings = load_settings()
    platform = Platform.open(settings)
    try:
        with platform.sessions() as master:
            url = server_pooler.pooler_url(platform.box, servers.get_server(master, name))
        return url.password if url is not None else None
    finally:
        platform.close()


def _add_spare_row(token: str) -> uuid.UUID:
    """A retiring spare's master row holding ``token`` as its sealed login password."""
    platform = Platform.open(load_settings())
    try:
        with platform.sessions.begin() as session:
            row = SpareDatabase(
                database_name=f"tenantry_spare_{uuid.uuid4().hex[:12]}",
                template="keys-test",
                status=SpareStatus.RETIRING,
                login_secret_encrypted=token,
            )
            session.add(row)
            session.flush()
            return row.id
    finally:
        platform.close()


def _spare_password(row_id: uuid.UUID) -> str:
    """The spare row's password, opened with the keys configured now; the row deleted."""
    settings = load_settings()
    platform = Platform.open(settings)
    try:
        with platform.sessions.begin() as session:
            row = session.get(SpareDatabase, row_id)
            assert row is not None
            assert row.login_secret_encrypted is not None
            opened = SecretBox.from_settings(settings).open(row.login_secret_encrypted)
            session.delete(row)
            return opened
    finally:
        platform.close()


def _use_backend(backend: str, new_database: DbFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Put master and billing on fresh databases of ``backend`` (SQLite: the data dir's)."""
    if backend != "sqlite":
        for var, label in (("DATABASE_URL", "master"), ("DATABASE_URL_BILLING", "billing")):
            url = new_database(label, create=False)
            monkeypatch.setenv(var, url.render_as_string(hide_password=False))


def _add_billing_secret(token: str) -> uuid.UUID:
    """A billing signing secret row holding ``token`` as its sealed value."""
    platform = Platform.open(load_settings())
    try:
        with platform.billing_sessions.begin() as session:
            row = BillingProcessorSecret(
                app_id="acme", processor="stripe", secret_encrypted=token, hint="…xyz"
            )
            session.add(row)
            session.flush()
            return row.id
    finally:
        platform.close()


def _billing_token(row_id: uuid.UUID) -> str:
    platform = Platform.open(load_settings())
    try:
        with platform.billing_sessions() as session:
            row = session.get(BillingProcessorSecret, row_id)
            assert row is not None
            return row.secret_encrypted
    finally:
        platform.close()


def test_rotation_stopped_by_one_database_keeps_every_key(
    cli: Invoke, backend: str, new_database: DbFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Master is resealed and committed before billing fails: the key file keeps the new key
    and the old ones, so every secret still opens, and a second run finishes the job."""
    _use_backend(backend, new_database, monkeypatch)
    assert cli("init").exit_code == 0
    key_file = Path(load_settings().key_file)
    original = _key_lines(key_file)
    assert cli("stores", "create", "sealed", "--name", "S").exit_code == 0
    assert cli("provision", "sealed", "--connect", SECRET_URL).exit_code == 0  # queued
    foreign = Fernet(Fernet.generate_key()).encrypt(b"whsec_foreign-secret").decode()
    bad = _add_billing_secret(foreign)

    failed = cli("keys", "rotate", "--retire-old", "--json")
    assert failed.exit_code == 2, failed.output
    error = json.loads(failed.stdout)["error"]
    assert "billing database (billing_processor_secrets.secret_encrypted" in error["message"]
    assert str(bad) in error["message"]
    assert "foreign-secret" not in failed.output
    keys = _key_lines(key_file)
    assert len(keys) == 2
    assert keys[1:] == original
    # Master's secrets were committed under the new key, and still open.
    assert _queued_job_secret() == "s3cret-pw"
    assert _billing_token(bad) == foreign

    platform = Platform.open(load_settings())
    try:
        with platform.billing_sessions.begin() as session:
            session.execute(delete(BillingProcessorSecret).where(BillingProcessorSecret.id == bad))
    finally:
        platform.close()
    _add_billing_secret(SecretBox.from_settings(load_settings()).seal("whsec_kept-secret"))
    finished = cli("keys", "rotate", "--retire-old", "--json")
    assert finished.exit_code == 0, finished.output
    resealed = as_json(finished)["resealed"]
    assert resealed["billing"]["columns"] == {"billing_processor_secrets.secret_encrypted": 1}
    assert resealed["master"]["columns"]["provisioning_jobs.secret_encrypted"] == 1
    assert len(_key_lines(key_file)) == 1
    assert _queued_job_secret() == "s3cret-pw"
    assert _unreadable_with_configured_keys() == {"master": {}, "billing": {}}


def test_retire_old_is_refused_while_a_secret_needs_an_old_key(
    cli: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process still on the old keys seals a secret after billing was resealed: the old
    keys stay in the file and the error names the database and column, never the secret."""
    assert cli("init").exit_code == 0
    key_file = Path(load_settings().key_file)
    original = _key_lines(key_file)
    # Boxes made from settings follow the key file; this one keeps the old keys, as a process
    # does that sealed just before the file was replaced and commits after the reseal.
    old_box = SecretBox(load_keys(load_settings()))
    recorded: list[uuid.UUID] = []

    def meanwhile(*args: Any, **kwargs: Any) -> None:
        # An API server started before the rotation adds a signing secret with its keys.
        recorded.append(_add_billing_secret(old_box.seal("whsec_late-secret")))
        record_rotation(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr("tenantry.operations.key_rotation.record_rotation", meanwhile)
        refused = cli("keys", "rotate", "--retire-old")
    assert refused.exit_code == 2, refused.output
    assert "1 in billing's billing_processor_secrets.secret_encrypted" in refused.stderr
    assert "late-secret" not in refused.output
    keys = _key_lines(key_file)
    assert len(keys) == 2
    assert keys[1:] == original
    assert SecretBox.from_settings(load_settings()).open(_billing_token(recorded[0])) == (
        "whsec_late-secret"
    )

    assert cli("keys", "rotate", "--retire-old").exit_code == 0
    assert len(_key_lines(key_file)) == 1
    assert _unreadable_with_configured_keys() == {"master": {}, "billing": {}}


def test_a_rotation_is_an_operation_counted_in_databases(cli: Invoke) -> None:
    assert cli("init").exit_code == 0
    assert cli("keys", "rotate").exit_code == 0
    (rotation,) = as_json(cli("ops", "list", "--kind", "key_rotate", "--json"))["items"]
    assert rotation["status"] == "succeeded"
    progress = rotation["progress"]
    assert (progress["current"], progress["total"], progress["unit"]) == (2, 2, "databases")


def test_a_rotation_whose_process_died_is_ended_by_the_sweep_and_run_again(
    cli: Invoke, tmp_path: Path
) -> None:
    """Killed after master was resealed, before billing: every key stays in the file, the
    sweep ends the rotation failed saying what to run, and running it again finishes."""
    assert cli("init").exit_code == 0
    key_file = tmp_path / "data" / "secret.key"
    original = _key_lines(key_file)
    assert cli("stores", "create", "sealed", "--name", "S").exit_code == 0
    assert cli("provision", "sealed", "--connect", SECRET_URL).exit_code == 0  # queued
    env = process_env(
        tmp_path / "data",
        TENANTRY_JOB_LEASE_SECONDS="1",
        TENANTRY_FAILPOINTS="key_rotate.resealing-billing=kill",
    )
    killed = subprocess.run(
        [sys.executable, "-m", "tenantry", "keys", "rotate"],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    keys = _key_lines(key_file)
    assert len(keys) == 2
    assert keys[1:] == original
    assert _queued_job_secret() == "s3cret-pw"  # resealed under the new key, and it opens
    time.sleep(1.5)  # the lease lapses: nobody renews it

    queue = Queue(load_settings(job_lease_seconds=1))
    try:
        # What a worker's sweep does at start and every minute: it ends the dead rotation
        # (checked below), and on a host slow enough that the provisioning job queued above
        # has waited past the queue's grace (5 s) it re-enqueues that job too; both count.
        assert queue.recover() >= 1
    finally:
        queue.close()
    (ended,) = as_json(cli("ops", "list", "--kind", "key_rotate", "--json"))["items"]
    assert (ended["status"], ended["progress"]["step"]) == ("failed", "resealing billing")
    assert "tenantry keys rotate" in ended["progress"]["message"]

    again = cli("keys", "rotate", "--retire-old", "--json")
    assert again.exit_code == 0, again.output
    assert len(_key_lines(key_file)) == 1
    assert _queued_job_secret() == "s3cret-pw"
