"""Rotating a store's runtime credentials: requests keep succeeding through the switch, the
password two rotations old stops working, and the scheduler rotates what the policy says."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from tenantry.db.engines import make_engine
from tenantry.db.master.models import AuditLog, IntegrationConfig, Operation
from tenantry.db.types import utcnow
from tenantry.db.urls import parse_url
from tenantry.errors import Conflict, InvalidInput
from tenantry.operations import credential_rotation
from tenantry.operations.work import credential_tick
from tenantry.runtime import Platform
from tenantry.services import stores
from tenantry.services.connections import split_url, tenant_url
from tenantry.services.runtime_access import drop_store_logins
from tests.cli.conftest import Invoke, as_json, cli
from tests.conftest import SERVER_URLS
from tests.db.test_logins import _pg_accepts
from tests.platform_fixtures import platform, settings
from tests.services.test_moves import provision
from tests.store_logins import server

__all__ = ["cli", "platform", "server", "settings"]


def _url(platform: Platform, slug: str) -> URL:
    with platform.sessions() as session:
        config = stores.active_connection(session, stores.get_store(session, slug))
        assert config is not None
        return tenant_url(platform.box, config)


def _request(platform: Platform, slug: str) -> None:
    """What an API request does: the store's row from master, then its database through
    the router (a read and a write)."""
    with platform.sessions() as master:
        store = stores.get_store(master, slug)
        with platform.router.session(master, store) as tenant:
            tenant.execute(text("SELECT count(*) FROM categories")).scalar()
            tenant.execute(text("UPDATE categories SET name = name"))
            tenant.commit()


def _password_works(backend: str, url: URL) -> bool:
    if backend == "postgresql":  # the test server trusts 127.0.0.1: ask the stored verifier
        admin = parse_url(SERVER_URLS["postgresql"])
        return _pg_accepts(admin, str(url.username), str(url.password))
    engine = make_engine(url, pooled=False)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except DBAPIError:
        return False
    finally:
        engine.dispose()


def test_requests_never_fail_while_the_credentials_rotate(platform: Platform, server: str) -> None:
    provision(platform, "busy-shop", server="db1")
    first = _url(platform, "busy-shop")
    failures: list[str] = []
    served = [0]
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                _request(platform, "busy-shop")
                served[0] += 1
            except Exception as exc:
                failures.append(f"{type(exc).__name__}: {exc}")

    clients = [threading.Thread(target=client) for _ in range(4)]
    for thread in clients:
        thread.start()
    try:
        logins_used = []
        for _ in range(3):
            time.sleep(0.4)
            done = credential_rotation.rotate_store(platform, "busy-shop", actor="test")
            logins_used.append(done.login)
        time.sleep(0.4)
    finally:
        stop.set()
        for thread in clients:
            thread.join()

    assert failures == []
    assert served[0] > 20
    # Alternating logins: b, a, b after a.
    assert logins_used[0] != first.username
    assert logins_used == [logins_used[0], first.username, logins_used[0]]
    now = _url(platform, "busy-shop")
    assert now.username == logins_used[-1]
    # The first password was replaced by the second rotation: it no longer works.
    assert not _password_works(server, first)
    assert _password_works(server, now)
    with platform.sessions() as session:
        kinds = session.scalars(
            select(Operation.status).where(Operation.kind == "store_credentials")
        ).all()
        details = session.scalars(
            select(AuditLog.details).where(AuditLog.action == "store.credentials_rotated")
        ).all()
    assert kinds == ["succeeded"] * 3
    assert len(details) == 3
    assert str(now.password) not in str(details)
    assert str(first.password) not in str(details)


def test_the_scheduler_rotates_only_credentials_older_than_the_policy(
    platform: Platform, server: str
) -> None:
    provision(platform, "old-shop", server="db1")
    provision(platform, "new-shop", server="db1")
    before = {slug: _url(platform, slug).username for slug in ("old-shop", "new-shop")}
    with platform.sessions.begin() as session:
        store = stores.get_store(session, "old-shop")
        session.execute(
            update(IntegrationConfig)
            .where(IntegrationConfig.store_id == store.id)
            .values(credentials_rotated_at=utcnow() - timedelta(days=91))
        )

    assert credential_tick(platform) == ["old-shop"]

    assert _url(platform, "old-shop").username != before["old-shop"]
    assert _url(platform, "new-shop").username == before["new-shop"]
    assert credential_tick(platform) == []  # rotated just now: not due again
    _request(platform, "old-shop")


def test_a_store_without_a_runtime_login_is_refused_with_why(platform: Platform) -> None:
    provision(platform, "file-shop")  # SQLite: no logins
    with pytest.raises(Conflict, match="no runtime login"):
        credential_rotation.rotate_store(platform, "file-shop", actor="cli:test")
    assert credential_rotation.due_stores(platform, older_than=None) == []


@pytest.mark.parametrize("age", ["90", "d", "-1d", "3w", "99999999d"])
def test_an_age_that_is_not_a_duration_is_refused(age: str) -> None:
    with pytest.raises(InvalidInput, match="not a duration"):
        credential_rotation.parse_age(age)


def test_the_cli_needs_a_slug_or_all_and_explains_a_refusal(
    platform: Platform, cli: Invoke
) -> None:
    provision(platform, "file-shop")
    neither = cli("stores", "rotate-credentials", "--json")
    assert neither.exit_code != 0
    assert "slug or --all" in as_json(neither)["error"]["message"]
    refused = cli("stores", "rotate-credentials", "file-shop", "--json")
    assert refused.exit_code != 0
    assert "no runtime login" in as_json(refused)["error"]["message"]
    nothing = cli("stores", "rotate-credentials", "--all", "--older-than", "90d", "--json")
    assert nothing.exit_code == 0, nothing.output
    assert as_json(nothing) == {"items": [], "failed": 0}


def test_the_cli_rotates_every_store_and_prints_no_password(
    platform: Platform, server: str, cli: Invoke
) -> None:
    provision(platform, "cli-shop", server="db1")
    before = _url(platform, "cli-shop")
    done = cli("stores", "rotate-credentials", "--all", "--json")
    assert done.exit_code == 0, done.output
    [item] = as_json(done)["items"]
    after = _url(platform, "cli-shop")
    assert item == {
        "store": "cli-shop",
        "rotated": True,
        "login": after.username,
        "previous_login": before.username,
        "error": None,
    }
    assert str(after.password) not in done.output
    _request(platform, "cli-shop")


def _make_legacy(platform: Platform, slug: str, backend: str) -> None:
    """Turn ``slug`` into a store as provisioned before runtime logins: served with the
    server's admin login, no login of its own, its database open to every login (PG)."""
    admin = parse_url(SERVER_URLS[backend])
    with platform.sessions.begin() as session:
        store = stores.get_store(session, slug)
        config = stores.active_connection(session, store)
        assert config is not None
        database = str(config.config_data["database"])
        drop_store_logins(admin, slug, store.id)
        data, secret = split_url(platform.box, admin.set(database=database))
        session.execute(
            update(IntegrationConfig)
            .where(IntegrationConfig.id == config.id)
            .values(
                config_data=data,
                secret_encrypted=secret,
                access_mode=None,
                can_ddl=None,
                credentials_rotated_at=None,
            )
        )
        store.connection_version += 1
    if backend == "postgresql":
        engine = make_engine(admin.set(database="postgres"), pooled=False)
        try:
            with engine.connect() as conn:
                conn.execute(text(f'GRANT CONNECT ON DATABASE "{database}" TO PUBLIC'))
                conn.commit()
        finally:
            engine.dispose()


def test_a_store_served_with_the_admin_login_gets_its_first_runtime_login(
    platform: Platform, server: str, cli: Invoke
) -> None:
    provision(platform, "old-shop", server="db1")
    _make_legacy(platform, "old-shop", server)
    assert _url(platform, "old-shop").username == parse_url(SERVER_URLS[server]).username
    # The scheduler does not convert stores on its own; asking does.
    assert credential_tick(platform) == []
    assert credential_rotation.due_stores(platform, older_than=None) == []
    done = cli("stores", "rotate-credentials", "--all", "--json")
    assert done.exit_code == 0, done.output
    [item] = as_json(done)["items"]
    assert item["rotated"] is True
    assert item["previous_login"] is None
    now = _url(platform, "old-shop")
    assert now.username == item["login"]
    assert str(now.username).endswith("_a")
    with platform.sessions() as session:
        config = stores.active_connection(session, stores.get_store(session, "old-shop"))
        assert config is not None
        assert config.access_mode == "runtime_login"
    _request(platform, "old-shop")
    with platform.sessions() as master:
        store = stores.get_store(master, "old-shop")
        with platform.router.connection(master, store) as conn:
            assert (
                conn.execute(text("SELECT current_user")).scalar_one().startswith(str(now.username))
            )
            with pytest.raises(DBAPIError):
                conn.execute(text("CREATE TABLE intruder (id INT)"))
    if server == "postgresql":
        database = str(now.database)
        admin = parse_url(SERVER_URLS[server])
        engine = make_engine(admin.set(database=database), pooled=False)
        try:
            with engine.connect() as conn:
                public = conn.execute(
                    text("SELECT has_database_privilege('public', :d, 'CONNECT')"),
                    {"d": database},
                ).scalar_one()
        finally:
            engine.dispose()
        assert public is False
