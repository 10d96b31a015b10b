"""A store created on a database server is used through its own runtime login (service grants,
no DDL); migrations, backups, moves, restores and drops go through the server's admin login."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text, update
from sqlalchemy.exc import DBAPIError

from tenantry.backup.storage import storage_for
from tenantry.db import logins
from tenantry.db.admin import create_database
from tenantry.db.ddl_probe import probe_ddl
from tenantry.db.master.models import (
    AccessMode,
    DatabaseServer,
    IntegrationConfig,
    TenantOutcome,
)
from tenantry.db.urls import parse_url
from tenantry.errors import Conflict
from tenantry.operations import store_delete
from tenantry.operations.backup_take import take_backup
from tenantry.operations.restore import restore
from tenantry.runtime import Platform
from tenantry.services import stores
from tenantry.services.backups.restore_plan import plan_restore
from tenantry.services.backups.scheduling import protection
from tenantry.services.backups.targets import resolve, scratch_server
from tenantry.services.connections import migrator_url, tenant_url
from tenantry.services.fleet_migrate import MigrateOptions, migrate_tenant
from tenantry.services.fleet_targets import tenant_databases
from tenantry.services.runtime_access import store_logins
from tests.conftest import SERVER_URLS, require_server
from tests.platform_fixtures import platform, settings
from tests.services.test_moves import mover, provision, register
from tests.store_logins import server
from tests.store_setup import connect_store

__all__ = ["platform", "server", "settings"]

_USER_SQL = {"postgresql": "SELECT current_user", "mysql": "SELECT SUBSTRING_INDEX(USER(), '@', 1)"}


def _config(platform: Platform, slug: str) -> IntegrationConfig:
    with platform.sessions() as session:
        config = stores.active_connection(session, stores.get_store(session, slug))
        assert config is not None
        session.expunge(config)
        return config


def _routed(platform: Platform, slug: str, sql: str) -> object:
    """``sql``'s first value in a router session of the store (as the API would run it)."""
    with platform.sessions() as master:
        store = stores.get_store(master, slug)
        with platform.router.session(master, store) as tenant:
            value = tenant.execute(text(sql)).scalar()
            tenant.commit()
            return value


def _product_count(platform: Platform, slug: str) -> object:
    return _routed(platform, slug, "SELECT count(*) FROM products")


def test_a_provisioned_store_routes_as_its_runtime_login_which_cannot_change_the_schema(
    platform: Platform, server: str
) -> None:
    provision(platform, "rt-shop", server="db1")
    config = _config(platform, "rt-shop")
    assert config.access_mode == AccessMode.RUNTIME_LOGIN
    assert config.can_ddl is False
    assert config.credentials_rotated_at is not None
    with platform.sessions() as session:
        store = stores.get_store(session, "rt-shop")
        login = store_logins(store.slug, store.id)[0]
        admin_user = migrator_url(session, platform.box, config).username
    assert admin_user != login
    assert _routed(platform, "rt-shop", _USER_SQL[server]) == login
    assert _product_count(platform, "rt-shop") == 0  # reads (and the seed's rows exist)
    runtime = tenant_url(platform.box, config)
    for ddl in ("CREATE TABLE intruder (id INTEGER)", "DROP TABLE products"):
        with pytest.raises(DBAPIError):
            _routed(platform, "rt-shop", ddl)
    assert probe_ddl(runtime) is False


def test_connect_existing_records_whether_the_given_login_may_change_the_schema(
    platform: Platform, server: str
) -> None:
    url = parse_url(SERVER_URLS[server]).set(database=f"t_given_{uuid.uuid4().hex[:10]}")
    create_database(url)
    connect_store(platform, "given-shop", url, name="Given")
    config = _config(platform, "given-shop")
    assert config.access_mode == AccessMode.GIVEN_URL
    assert config.can_ddl is True  # the server's admin login was given
    assert tenant_url(platform.box, config).username == url.username


def test_deleting_a_store_with_its_database_drops_its_logins(
    platform: Platform, server: str
) -> None:
    provision(platform, "gone-shop", server="db1")
    admin = SERVER_URLS[server]
    with platform.sessions() as session:
        store = stores.get_store(session, "gone-shop")
        names = store_logins(store.slug, store.id)
    assert logins.login_exists(parse_url(admin), names[0])
    deletion = store_delete.plan(platform, "gone-shop", drop_database=True)
    report = store_delete.delete(platform, deletion, actor="cli:test")
    assert report["database_dropped"] is True
    assert names[0] in report["logins_dropped"]
    assert not logins.login_exists(parse_url(admin), names[0])


def test_a_moved_store_routes_as_a_runtime_login_on_its_new_server(
    platform: Platform, server: str
) -> None:
    other = "mysql" if server == "postgresql" else "postgresql"
    require_server(other)
    register(platform, "db2", other)
    provision(platform, "mv-shop", server="db1")

    moved = mover(platform).move("mv-shop", "db2")

    assert moved.status == "completed", moved.error
    config = _config(platform, "mv-shop")
    assert config.access_mode == AccessMode.RUNTIME_LOGIN
    assert config.config_data["engine"] == other
    with platform.sessions() as session:
        store = stores.get_store(session, "mv-shop")
        names = store_logins(store.slug, store.id)
    assert _routed(platform, "mv-shop", _USER_SQL[other]) in names
    assert _product_count(platform, "mv-shop") == 0
    with pytest.raises(DBAPIError):
        _routed(platform, "mv-shop", "CREATE TABLE intruder (id INTEGER)")


def test_a_store_restored_in_place_keeps_a_working_runtime_login(
    platform: Platform, server: str
) -> None:
    provision(platform, "rs-shop", server="db1")
    config = _config(platform, "rs-shop")
    login = config.config_data["username"]
    storage = storage_for(platform.settings)
    with platform.sessions() as session:
        target = resolve(session, platform.box, platform.settings, "store:rs-shop")
    backup = take_backup(platform.sessions, storage, target, actor="cli:test")
    with platform.sessions() as session:
        plan = plan_restore(
            session, platform.box, platform.settings, str(backup.id), target=None, in_place=True
        )
    assert plan.target.username != login  # restored through the admin login

    restore(
        platform.sessions,
        storage,
        platform.settings,
        plan,
        confirm=plan.confirm_name,
        actor="cli:test",
    )

    assert _routed(platform, "rs-shop", _USER_SQL[server]) == login
    assert _routed(platform, "rs-shop", "SELECT count(*) FROM categories") == 2
    with pytest.raises(DBAPIError):
        _routed(platform, "rs-shop", "CREATE TABLE intruder (id INTEGER)")
    assert _config(platform, "rs-shop").config_data == config.config_data


def test_fleet_runs_reach_a_runtime_login_store_through_the_servers_admin_login(
    platform: Platform, server: str
) -> None:
    provision(platform, "fl-shop", server="db1")
    runtime = tenant_url(platform.box, _config(platform, "fl-shop"))
    with platform.sessions() as session:
        [target] = tenant_databases(session, platform.box, ["fl-shop"])
    assert target.url.username == parse_url(SERVER_URLS[server]).username
    assert target.url.database == runtime.database
    assert probe_ddl(target.url) is True


def _least_privilege_store(platform: Platform, server: str, new_login: str) -> str:
    """A store connected (connect-existing) with a ``service`` login to a ready database;
    its database was provisioned, then released, by another store."""
    admin = parse_url(SERVER_URLS[server])
    url = admin.set(database=f"t_lp_{uuid.uuid4().hex[:10]}")
    create_database(url)
    connect_store(platform, "seed-shop", url)
    store_delete.delete(
        platform, store_delete.plan(platform, "seed-shop", drop_database=False), actor="cli:test"
    )
    password = logins.create_login(admin, new_login)
    logins.grant(admin, str(url.database), new_login, "service")
    connect_store(
        platform, "lp-shop", logins.login_url(admin, str(url.database), new_login, password)
    )
    return str(url.database)


def test_a_least_privilege_store_is_migrated_and_checked_through_a_matching_servers_admin(
    platform: Platform, server: str
) -> None:
    login = f"tt_lp_{uuid.uuid4().hex[:10]}"
    admin = parse_url(SERVER_URLS[server])
    try:
        database = _least_privilege_store(platform, server, login)
        config = _config(platform, "lp-shop")
        assert config.access_mode == AccessMode.GIVEN_URL
        assert config.can_ddl is False
        with platform.sessions() as session:
            migrator = migrator_url(session, platform.box, config)
            backup = take_backup(
                platform.sessions,
                storage_for(platform.settings),
                resolve(session, platform.box, platform.settings, "store:lp-shop"),
                actor="cli:test",
            )
            scratch = scratch_server(session, platform.box, platform.settings, backup)
        # Server db1 (the fixture's) is on the store's host: its admin login is used.
        assert migrator.username == admin.username
        assert migrator.database == database
        with platform.sessions() as session:
            [target] = tenant_databases(session, platform.box, ["lp-shop"])
        assert target.url.username == admin.username
        assert target.no_ddl is None
        assert scratch.username == admin.username
        with platform.sessions() as session:
            [state] = protection(session, ["store:lp-shop"])
        assert state.protected  # a fresh good backup, and it can be restore-tested
        with platform.sessions.begin() as session:
            session.execute(update(DatabaseServer).values(is_active=False))
        with platform.sessions() as session:
            assert migrator_url(session, platform.box, config).username == login
            with pytest.raises(Conflict, match="no registered server"):
                scratch_server(session, platform.box, platform.settings, backup)
            [state] = protection(session, ["store:lp-shop"])
            [target] = tenant_databases(session, platform.box, ["lp-shop"])
        assert target.url.username == login
        assert target.no_ddl is not None
        options = MigrateOptions(goal=None, acting_app="tenantry", owner="tenantry")
        outcome = migrate_tenant(target, platform.tenant_spec, options)
        assert outcome.status == TenantOutcome.REFUSED
        assert outcome.error is not None
        assert "no registered server is on its host" in outcome.error
        assert _product_count(platform, "lp-shop") == 0  # untouched, still served
        assert state.last_good is not None
        assert not state.protected  # its backups cannot be restore-tested: not protected
        assert state.unverifiable is not None
        assert "no registered server" in state.unverifiable
    finally:
        with platform.sessions.begin() as session:  # the fixture drops through it
            session.execute(update(DatabaseServer).values(is_active=True))
        logins.drop_login(admin, login)
