"""The one URL parser: what it accepts, what it refuses, and that no error shows a password."""

from __future__ import annotations

import pytest

from tenantry.db.urls import mask, parse_url, redact
from tenantry.errors import ConfigurationError

SECRET = "Zq7xK9wJ"

#: Malformed URLs, each with the words its error must contain. Every one carries ``SECRET``
#: (in its password, or where a mistyped password lands) and no error may show any of it.
BAD_URLS = [
    (f"postgresql://u:{SECRET}@127.0.0.1:abc/x", "invalid port"),
    (f"postgresql://u:{SECRET}@127.0.0.1:99999/x", "invalid port"),
    (f"postgresql://u:{SECRET}@127.0.0.1:0/x", "invalid port"),
    (f"postgresql://u:{SECRET}@127.0.0.1:-5/x", "invalid port"),
    (f"postgresql://u:{SECRET}@127.0.0.1:/x", "invalid port"),
    (f"postgresql://admin:{SECRET}/postgres", "invalid port"),  # host forgotten
    (f"postgresql://u:{SECRET}@h\x00ost/x", "control character"),
    (f"postgresql://u:{SECRET}\n@host/x", "control character"),
    (f"postgresql://u:{SECRET}@ho st/x", "space"),
    ("postgresql://", "no host"),
    (f"postgresql://u:{SECRET}@/x", "no host"),
    (f"postgresql://u:{SECRET}@:5432/x", "no host"),
    (f"postgresql://u:{SECRET}@host", "no database"),
    (f"mysql://u:{SECRET}@host:3306", "no database"),
    (f"postgresql://u:{SECRET}@host/x?sslmode=bogus", "invalid value for 'sslmode'"),
    (f"postgresql://u:{SECRET}@host/x?sslmod=require", "unknown option 'sslmod'"),
    (f"postgresql://u:{SECRET}@host/x?password={SECRET}", "unknown option 'password'"),
    (f"mysql://u:{SECRET}@host/x?charset=klingon", "invalid value for 'charset'"),
    (f"postgresql://u:{SECRET}@host/x?connect_timeout=soon", "whole number"),
    (f"postgresql://u:{SECRET}@host/x?sslmode=require&sslmode=disable", "twice"),
    (f"postgresql://u:{SECRET}@host/x?{SECRET}", "malformed query"),
    (f"postgresql://u:ab/{SECRET}@host/x", "'@' after the host"),
    (f"postgresql://u:ab?{SECRET}@host/x", "'@' after the host"),
    (f"postgresql://u:ab#{SECRET}@host/x", "'@' after the host"),
    (f"postgresql://u:{SECRET}@bad_host!/x", "invalid host"),
    (f"postgresql://u:{SECRET}@[::zz]:5432/x", "IPv6"),
    (f"postgresql://u:{SECRET}@host/a%2Fb", "invalid database name"),
    (f"oracle://u:{SECRET}@host/x", "unsupported backend 'oracle'"),
    (f"postgresql+asyncpg://u:{SECRET}@host/x", "driver 'asyncpg'"),
    (f"{SECRET}@host/x", "scheme://"),
    (f"sqlite://u:{SECRET}@host/x.db", "SQLite"),
    ("sqlite://", "no SQLite file"),
    ("sqlite:///x.db?mode=ro", "query options"),
    ("", "empty"),
    ("postgresql://h/" + "x" * 3000, "longer than"),
]


def _fragments(secret: str, size: int = 3) -> list[str]:
    """Every piece of ``secret`` of ``size`` characters (what a partial leak would show)."""
    return [secret[i : i + size] for i in range(len(secret) - size + 1)]


@pytest.mark.parametrize(("raw", "problem"), BAD_URLS)
def test_bad_urls_are_refused_naming_the_field_and_never_the_password(
    raw: str, problem: str
) -> None:
    with pytest.raises(ConfigurationError) as err:
        parse_url(raw, setting="DATABASE_URL")
    shown = str(err.value)
    assert err.value.message.startswith("DATABASE_URL ")
    assert problem in shown
    for piece in _fragments(SECRET):
        assert piece not in shown


def test_a_password_may_hold_at_signs_and_colons_as_typed() -> None:
    url = parse_url("postgresql://admin:ab@cd:S3cret@127.0.0.1:5432/postgres")
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "admin",
        "ab@cd:S3cret",
        "127.0.0.1",
        5432,
        "postgres",
    )
    assert mask(url) == "postgresql+psycopg://admin:***@127.0.0.1:5432/postgres"
    # Stored URLs are rendered (percent-encoded) and read back: the same URL again.
    again = parse_url(url.render_as_string(hide_password=False))
    assert again.password == "ab@cd:S3cret"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("postgresql://u:p%2Fq%3F@h/db", ("u", "p/q?", "h", None, "db")),
        ("postgresql://u:pa ss@h:6432/db", ("u", "pa ss", "h", 6432, "db")),
        ("postgresql://u@[::1]:5432/db", ("u", None, "::1", 5432, "db")),
        ("mariadb://root@db.example.com/shop", ("root", None, "db.example.com", None, "shop")),
        ("  mysql://u:p@h:3306/db  ", ("u", "p", "h", 3306, "db")),
    ],
)
def test_well_formed_urls_are_parsed_by_structure(raw: str, expected: tuple[object, ...]) -> None:
    url = parse_url(raw)
    assert (url.username, url.password, url.host, url.port, url.database) == expected
    assert parse_url(url.render_as_string(hide_password=False)) == url


def test_known_options_are_kept() -> None:
    url = parse_url("postgresql://u@h/db?sslmode=verify-full&connect_timeout=3")
    assert dict(url.query) == {"sslmode": "verify-full", "connect_timeout": "3"}
    mysql = parse_url("mysql://u@h/db?charset=utf8mb4&ssl_check_hostname=true")
    assert dict(mysql.query) == {"charset": "utf8mb4", "ssl_check_hostname": "true"}


def test_a_server_url_may_name_no_database_when_asked() -> None:
    url = parse_url("mysql://root:pw@127.0.0.1:3306", require_database=False)
    assert url.database is None
    assert mask(url) == "mysql+pymysql://root:***@127.0.0.1:3306"


@pytest.mark.parametrize("password", ["p", "postgres", "127", "q"])
def test_redact_masks_by_structure_without_spelling_out_a_short_password(
    password: str,
) -> None:
    message = (
        f"cannot connect to postgresql+psycopg://postgres:{password}@127.0.0.1:5432/postgres: "
        'connection to server at "127.0.0.1", port 5432 failed: FATAL: password '
        'authentication failed for user "postgres".'
    )
    assert redact(message) == (
        "cannot connect to postgresql+psycopg://postgres:***@127.0.0.1:5432/postgres: "
        'connection to server at "127.0.0.1", port 5432 failed: FATAL: password '
        'authentication failed for user "postgres".'
    )


def test_redact_masks_typed_urls_and_conninfo_passwords() -> None:
    text = (
        "tried postgresql://admin:ab@cd:S3cret@db:5432/x then "
        "host=db password='a b\\'c' port=5 and PGPASSWORD=hunter2; mysql://root@h/x"
    )
    assert redact(text) == (
        "tried postgresql://admin:***@db:5432/x then host=db password=*** port=5 and "
        "PGPASSWORD=***; mysql://root@h/x"
    )
    masked = "cannot connect to mysql+pymysql://root:***@127.0.0.1:3306/db (using password: YES)"
    assert redact(masked) == masked


def test_a_mysql_password_pymysql_cannot_send_is_refused_without_showing_it() -> None:
    with pytest.raises(ConfigurationError) as err:
        parse_url("mysql://root:Zq7☃xK@127.0.0.1:3306/db", setting="url")
    assert "Latin-1" in str(err.value)
    assert "☃" not in str(err.value)
    assert parse_url("postgresql://u:Zq7☃xK@h/db").password == "Zq7☃xK"
