"""A database's trouble, raised for real, is told alike by the HTTP API and the CLI: the same
kind and cause, a retry suggested, and never the driver's text, host or password."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from starlette.requests import Request

from tenantry.api.errors import error_response
from tenantry.cli.output import database_trouble as cli_trouble
from tenantry.db.engines import connect, make_engine
from tenantry.db.trouble import database_trouble
from tenantry.db.urls import parse_url
from tests.conftest import DbFactory

SECRET = "pw-that-must-not-show"


def _raised(action: Callable[[], object]) -> BaseException:
    with pytest.raises(SQLAlchemyError) as caught:
        action()
    return caught.value


def _locked(tmp_path: Path) -> BaseException:
    """SQLite's "database is locked": another writer holds the file past the busy timeout."""
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x INTEGER)")
    holder.execute("BEGIN IMMEDIATE")
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.05})
    try:

        def write() -> None:
            with engine.begin() as conn:
                conn.execute(text("INSERT INTO t VALUES (1)"))

        return _raised(write)
    finally:
        engine.dispose()
        holder.execute("ROLLBACK")
        holder.close()


def _pool_drained(tmp_path: Path) -> BaseException:
    """Every pooled connection in use past the pool's timeout."""
    engine = create_engine(
        f"sqlite:///{tmp_path / 'p.db'}", pool_size=1, max_overflow=0, pool_timeout=0.05
    )
    try:
        with engine.connect():
            return _raised(engine.connect)
    finally:
        engine.dispose()


def _unreachable(_tmp_path: Path) -> BaseException:
    """A PostgreSQL server that is not there (nothing listens on port 1), with a password."""
    url = parse_url(f"postgresql+psycopg://app:{SECRET}@127.0.0.1:1/shop")
    engine = create_engine(url, connect_args={"connect_timeout": 2})
    try:
        return _raised(engine.connect)
    finally:
        engine.dispose()


def _api(exc: BaseException) -> tuple[int, dict[str, str], dict[str, str]]:
    request = Request({"type": "http", "method": "POST", "path": "/stores", "headers": []})
    response = error_response(request, exc)
    return response.status_code, dict(response.headers), json.loads(bytes(response.body))["error"]


def _cause(message: str, needs: str) -> str:
    """The message's cause, with what needed the database left out."""
    return message.split("; ")[0].replace(needs, "…")


def _told_alike(exc: BaseException, kind: str, retry_after: str) -> None:
    status, headers, body = _api(exc)
    told = cli_trouble(exc)
    assert told is not None
    cli_kind, cli_message, cli_hint = told
    assert status == 503
    assert headers["retry-after"] == retry_after
    assert body["type"] == cli_kind == kind
    assert _cause(body["message"], "this request") == _cause(cli_message, "this command")
    assert "changed nothing" in body["message"]
    assert "wrote nothing" in cli_message
    assert body["hint"].startswith("Retry after")
    assert cli_hint.startswith("Run the command again")
    orig = str(getattr(exc, "orig", "") or exc)
    for text_shown in (body["message"], body["hint"], cli_message, cli_hint):
        assert SECRET not in text_shown
        assert "127.0.0.1" not in text_shown
        assert orig not in text_shown  # the driver's own words stay out


@pytest.mark.parametrize(
    ("make", "kind", "retry_after"),
    [
        (_locked, "DatabaseBusy", "1"),
        (_pool_drained, "DatabaseBusy", "5"),
        (_unreachable, "DatabaseUnavailable", "5"),
    ],
    ids=["sqlite-locked", "pool-drained", "server-unreachable"],
)
def test_each_trouble_is_told_alike_by_the_api_and_the_cli(
    make: Callable[[Path], BaseException], kind: str, retry_after: str, tmp_path: Path
) -> None:
    exc = make(tmp_path)
    _told_alike(exc, kind, retry_after)


@pytest.mark.server
@pytest.mark.parametrize("backend", ["postgresql", "mysql"], indirect=True)
def test_a_statement_past_the_timeout_is_told_alike(backend: str, new_database: DbFactory) -> None:
    url = new_database("trouble")
    engine = make_engine(url, pool_size=1, statement_timeout_ms=200)
    sleep = {"postgresql": "SELECT pg_sleep(2)", "mysql": "SELECT SLEEP(2)"}[backend]
    try:
        with connect(engine) as conn:
            exc = _raised(lambda: conn.execute(text(sleep)))
            conn.rollback()
    finally:
        engine.dispose()
    assert isinstance(exc, DBAPIError)
    _told_alike(exc, "StatementTimeout", "5")
    assert "TENANTRY_STATEMENT_TIMEOUT_MS" in _api(exc)[2]["hint"]


def test_errors_a_retry_cannot_get_past_are_no_trouble(tmp_path: Path) -> None:
    """A constraint violation or a bug is not a database being busy or down: neither surface
    tells it as one (the API answers it as its own kind, or 500)."""
    engine = create_engine(f"sqlite:///{tmp_path / 'u.db'}")
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE u (x INTEGER UNIQUE)"))
            conn.execute(text("INSERT INTO u VALUES (1)"))

        def duplicate() -> None:
            with engine.begin() as conn:
                conn.execute(text("INSERT INTO u VALUES (1)"))

        violation = _raised(duplicate)
    finally:
        engine.dispose()
    assert isinstance(violation, IntegrityError)
    for exc in (violation, ValueError("a bug")):
        assert database_trouble(exc) is None
        assert cli_trouble(exc) is None
        assert _api(exc)[0] != 503
