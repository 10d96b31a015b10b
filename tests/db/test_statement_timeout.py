"""Runtime engines have the server cancel a statement that runs past the statement timeout;
engines for migrations, backups and fleet runs (no timeout given) are never limited."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tenantry.db.engines import connect, make_engine
from tenantry.db.statement_timeout import is_statement_timeout, pg_options
from tenantry.db.urls import parse_url
from tenantry.runtime import Platform
from tenantry.settings import load_settings
from tests.conftest import DbFactory
from tests.platform_fixtures import ENV_VARS, install

SLEEP = {"postgresql": "SELECT pg_sleep(:s)", "mysql": "SELECT SLEEP(:s)"}


@pytest.mark.server
@pytest.mark.parametrize("backend", ["postgresql", "mysql"], indirect=True)
def test_a_runtime_statement_past_the_timeout_is_cancelled(
    backend: str, new_database: DbFactory
) -> None:
    url = new_database("timeout")
    limited = make_engine(url, pool_size=1, statement_timeout_ms=300)
    try:
        with connect(limited) as conn:
            started = time.monotonic()
            with pytest.raises(DBAPIError) as caught:
                conn.execute(text(SLEEP[backend]), {"s": 3})
            assert time.monotonic() - started < 2.5
            assert is_statement_timeout(caught.value)
            conn.rollback()
            # The connection is still good for quick statements.
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
    finally:
        limited.dispose()


@pytest.mark.server
@pytest.mark.parametrize("backend", ["postgresql", "mysql"], indirect=True)
def test_engines_without_a_timeout_are_not_limited(
    backend: str, new_database: DbFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TENANTRY_STATEMENT_TIMEOUT_MS", "200")
    url = new_database("unlimited")
    engine = make_engine(url, pooled=False)  # how migrations, backups and restores connect
    try:
        with connect(engine) as conn:
            conn.execute(text(SLEEP[backend]), {"s": 0.6})
    finally:
        engine.dispose()


@pytest.mark.server
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_only_the_api_platform_limits_master(
    backend: str, new_database: DbFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TENANTRY_DATA_DIR", f"{tmp_path}/data")
    settings = load_settings(
        database_url=new_database("master", create=False).render_as_string(hide_password=False),
        statement_timeout_ms=200,
    )
    install(settings)
    for runtime, limited in ((False, False), (True, True)):
        platform = Platform.open(settings, runtime=runtime)
        try:
            with platform.sessions() as session:
                if limited:
                    with pytest.raises(DBAPIError) as caught:
                        session.execute(text(SLEEP[backend]), {"s": 0.6})
                    assert is_statement_timeout(caught.value)
                else:
                    session.execute(text(SLEEP[backend]), {"s": 0.6})
        finally:
            platform.close()


def test_the_urls_own_libpq_options_are_kept() -> None:
    url = parse_url("postgresql://u@h/x?options=-c%20search_path%3Dshop")
    assert pg_options(url, 250) == "-c search_path=shop -c statement_timeout=250"
    assert pg_options(parse_url("postgresql://u@h/x"), 250) == "-c statement_timeout=250"
