"""TLS to database servers: the URL's options are honoured by every way tenantry connects,
a TLS-only server refuses plain text with an error that says what to add, and
TENANTRY_REQUIRE_TLS refuses a plain-text URL before any connection is made."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from tenantry.backup.dump_tools.mysql import _mysql_options
from tenantry.backup.dump_tools.postgres import _pg_env
from tenantry.db.admin import create_database, database_exists, drop_database, server_connection
from tenantry.db.engines import connect, make_engine
from tenantry.db.server_connections import ServerConnections
from tenantry.db.tls import mysql_tool_args, uses_tls
from tenantry.db.urls import parse_url
from tenantry.errors import ConfigurationError, DatabaseUnreachable
from tests.conftest import SERVER_URLS, require_server
from tests.tls_postgres import TlsPostgres, tls_postgres

__all__ = ["tls_postgres"]


@pytest.mark.server
def test_sslmode_require_connects_over_tls(tls_postgres: TlsPostgres) -> None:
    engine = make_engine(tls_postgres.url(sslmode="require"), pooled=False)
    try:
        with connect(engine) as conn:
            ssl = conn.execute(
                text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            ).scalar_one()
    finally:
        engine.dispose()
    assert ssl is True


@pytest.mark.server
def test_verify_full_checks_the_certificate(tls_postgres: TlsPostgres) -> None:
    url = tls_postgres.url(sslmode="verify-full", sslrootcert=str(tls_postgres.ca_file))
    engine = make_engine(url, pooled=False)
    try:
        with connect(engine) as conn:
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
    finally:
        engine.dispose()


@pytest.mark.server
def test_plain_text_is_refused_by_the_server_with_a_clear_error(
    tls_postgres: TlsPostgres,
) -> None:
    engine = make_engine(tls_postgres.url(sslmode="disable"), pooled=False)
    try:
        with pytest.raises(DatabaseUnreachable) as caught, connect(engine):
            pass
    finally:
        engine.dispose()
    assert "no encryption" in caught.value.message
    assert caught.value.hint is not None
    assert "accepts only TLS" in caught.value.hint
    assert "sslmode=" in caught.value.hint


@pytest.mark.server
def test_admin_and_fleet_connections_honour_sslmode(tls_postgres: TlsPostgres) -> None:
    name = f"tls_admin_{uuid.uuid4().hex[:8]}"
    url = tls_postgres.url(name, sslmode="require")
    assert create_database(url) is True
    try:
        assert database_exists(url)
        fleet = ServerConnections()
        try:
            with fleet.connect(url) as conn:
                assert conn.execute(
                    text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                ).scalar_one()
        finally:
            fleet.dispose()
    finally:
        drop_database(url)
    with pytest.raises(DatabaseUnreachable, match="no encryption"):
        database_exists(tls_postgres.url(name, sslmode="disable"))


def test_require_tls_refuses_a_plain_url_before_connecting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    require_server("postgresql")
    monkeypatch.setenv("TENANTRY_REQUIRE_TLS", "true")
    plain = parse_url(SERVER_URLS["postgresql"]).set(password="s3cret-pw")
    for attempt in (
        lambda: make_engine(plain, pooled=False),
        lambda: database_exists(plain),
        lambda: _pg_env(plain),
    ):
        with pytest.raises(ConfigurationError) as caught:
            attempt()
        assert "TENANTRY_REQUIRE_TLS is on" in caught.value.message
        assert "127.0.0.1:5432" in caught.value.message
        assert "s3cret-pw" not in str(caught.value)
        assert "sslmode=verify-full" in (caught.value.hint or "")
    mysql = parse_url("mysql://root:pw@127.0.0.1:3306/x")
    with pytest.raises(ConfigurationError, match="ssl_ca"):
        make_engine(mysql, pooled=False)
    with pytest.raises(ConfigurationError), _mysql_options(mysql):
        pass


def test_require_tls_accepts_tls_urls_and_sqlite(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TENANTRY_REQUIRE_TLS", "true")
    make_engine(parse_url(f"sqlite:///{tmp_path}/x.db")).dispose()
    make_engine(parse_url("postgresql://u:p@127.0.0.1/x?sslmode=require")).dispose()
    make_engine(parse_url("mysql://u:p@127.0.0.1/x?ssl_ca=/etc/ca.pem")).dispose()
    monkeypatch.setenv("TENANTRY_REQUIRE_TLS", "maybe")
    with pytest.raises(ConfigurationError, match="must be true or false"):
        make_engine(parse_url("postgresql://u:p@127.0.0.1/x"))


def test_what_counts_as_tls() -> None:
    assert not uses_tls(parse_url("postgresql://u@h/x?sslmode=prefer"))
    assert uses_tls(parse_url("postgresql://u@h/x?sslmode=verify-ca"))
    assert not uses_tls(parse_url("mysql://u@h/x"))
    assert uses_tls(parse_url("mysql://u@h/x?ssl_ca=/ca.pem"))


def test_dump_tools_get_the_tls_options() -> None:
    pg = parse_url("postgresql://u:p@h/x?sslmode=verify-full&sslrootcert=/ca.pem&sslcert=/c")
    env = _pg_env(pg)
    assert env["PGSSLMODE"] == "verify-full"
    assert env["PGSSLROOTCERT"] == "/ca.pem"
    assert env["PGSSLCERT"] == "/c"
    mysql = parse_url("mysql://u:p@h/x?ssl_ca=/ca.pem&ssl_check_hostname=false")
    assert mysql_tool_args(mysql) == ["--ssl-ca=/ca.pem", "--ssl"]
    with _mysql_options(parse_url("mysql://u:p@h/x?ssl_ca=/ca.pem")) as args:
        assert "--ssl-ca=/ca.pem" in args
        assert "--ssl-verify-server-cert" in args


@pytest.mark.server
def test_mariadb_with_tls_options_never_falls_back_to_plain_text(
    tls_postgres: TlsPostgres,
) -> None:
    require_server("mysql")
    # A CA that did not sign the server's certificate (if it has one at all): PyMySQL must
    # refuse, either because the server offers no TLS or because its certificate fails.
    url = parse_url(SERVER_URLS["mysql"]).update_query_dict({"ssl_ca": str(tls_postgres.ca_file)})
    engine = make_engine(url, pooled=False)
    try:
        with pytest.raises(DatabaseUnreachable) as caught, connect(engine):
            pass
    finally:
        engine.dispose()
    assert "TLS" in (caught.value.hint or "")
    missing = parse_url(SERVER_URLS["mysql"]).update_query_dict({"ssl_ca": "/nonexistent/ca.pem"})
    engine = make_engine(missing, pooled=False)
    try:
        with pytest.raises(DatabaseUnreachable, match="could not be read"), connect(engine):
            pass
    finally:
        engine.dispose()


@pytest.mark.server
def test_mariadb_without_tls_options_is_plain_text_on_every_way_tenantry_connects() -> None:
    # As for the mariadb tools: no ssl_* option, no TLS. PyMySQL >= 1.2 would otherwise try
    # TLS unchecked, building an SSL context with the CA bundle for every connection (35 ms of
    # CPU each: a fleet run over a thousand MariaDB tenants spent half a minute on it).
    require_server("mysql")
    url = parse_url(SERVER_URLS["mysql"])
    engine = make_engine(url, pooled=False)
    try:
        with connect(engine) as conn:
            assert conn.connection.dbapi_connection.ssl is False  # type: ignore[union-attr]
            assert conn.scalar(text("SELECT 1")) == 1
    finally:
        engine.dispose()
    fleet = ServerConnections()
    try:
        with fleet.connect(url) as conn:
            assert conn.connection.dbapi_connection.ssl is False  # type: ignore[union-attr]
    finally:
        fleet.dispose()
    with server_connection(url) as conn:  # creating and dropping databases
        assert conn.connection.dbapi_connection.ssl is False  # type: ignore[union-attr]
