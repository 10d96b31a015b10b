"""Settings: defaults, URL normalisation and clear errors for malformed values."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenantry.db.urls import mask_raw, parse_url
from tenantry.errors import ConfigurationError
from tenantry.settings import Settings, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("DATABASE_URL", "DATABASE_URL_BILLING", "TENANTRY_DATA_DIR", "TENANTRY_APP"):
        monkeypatch.delenv(var, raising=False)


def test_defaults_are_embedded_sqlite_in_the_data_dir() -> None:
    settings = load_settings()
    assert settings.data_dir == Path(".tenantry")
    assert settings.master_url.render_as_string() == "sqlite+pysqlite:///.tenantry/master.db"
    assert settings.billing_url.database == ".tenantry/billing.db"
    assert settings.owner_of("billing") == "tenantry"


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TENANTRY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL_BILLING", "mysql://bill:pw@db:3306/billing")
    monkeypatch.setenv("TENANTRY_BILLING_OWNER", "ar-service")
    settings = load_settings()
    assert settings.master_url.database == str(tmp_path / "master.db")
    assert settings.billing_url.drivername == "mysql+pymysql"
    assert settings.owner_of("billing") == "ar-service"
    assert settings.owner_of("tenant") == "tenantry"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("postgresql://u@h/db", "postgresql+psycopg"),
        ("postgres://u@h/db", "postgresql+psycopg"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg"),
        ("mysql://u@h/db", "mysql+pymysql"),
        ("mariadb://u@h/db", "mariadb+pymysql"),
        ("sqlite:///x.db", "sqlite+pysqlite"),
    ],
)
def test_drivers_are_chosen_by_backend(raw: str, expected: str) -> None:
    assert parse_url(raw).drivername == expected


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("not a url", "not a valid database URL"),
        ("oracle://u@h/db", "unsupported backend 'oracle'"),
        ("postgresql+asyncpg://u@h/db", "driver 'asyncpg'"),
        ("postgresql://u@h", "names no database"),
        ("sqlite://", "names no SQLite file"),
    ],
)
def test_malformed_urls_are_refused_with_the_setting_named(raw: str, fragment: str) -> None:
    with pytest.raises(ConfigurationError) as err:
        Settings(database_url=raw)
    assert fragment in str(err.value)
    assert "DATABASE_URL" in err.value.message


def test_errors_never_echo_a_password() -> None:
    with pytest.raises(ConfigurationError) as err:
        Settings(database_url_billing="oracle://user:topsecret@h/db")
    assert "topsecret" not in str(err.value)
    assert mask_raw("x://user:topsecret@h:1/db") == "x://…"


def test_app_name_must_be_sane() -> None:
    with pytest.raises(ConfigurationError):
        Settings(app="  ")


def test_queue_url_must_be_redis() -> None:
    assert Settings(queue_url="redis://127.0.0.1:6379/0").queue_url == "redis://127.0.0.1:6379/0"
    with pytest.raises(ConfigurationError) as err:
        Settings(queue_url="amqp://guest:guest@localhost")
    assert "TENANTRY_QUEUE_URL" in err.value.message
    assert "guest:guest" not in err.value.message


@pytest.mark.parametrize("bad", ["", "two words", "shop-eu", "x" * 65, "a.b", "ä"])
def test_queue_name_must_be_a_plain_name(bad: str) -> None:
    assert Settings(queue_name=" shop_eu1 ").queue_name == "shop_eu1"
    with pytest.raises(ConfigurationError) as err:
        Settings(queue_name=bad)
    assert "TENANTRY_QUEUE_NAME" in err.value.message
    assert "own" in (err.value.hint or "")


@pytest.mark.parametrize("bad", ["0", "-5", "ten", "1.5", "3600001"])
def test_sqlite_busy_timeout_must_be_whole_milliseconds(
    bad: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tenantry.db.engines import sqlite_busy_timeout_ms

    monkeypatch.setenv("TENANTRY_SQLITE_BUSY_TIMEOUT_MS", "250")
    assert sqlite_busy_timeout_ms() == 250
    monkeypatch.setenv("TENANTRY_SQLITE_BUSY_TIMEOUT_MS", bad)
    with pytest.raises(ConfigurationError) as err:
        sqlite_busy_timeout_ms()
    assert "TENANTRY_SQLITE_BUSY_TIMEOUT_MS" in err.value.message
    assert repr(bad) in err.value.message


def test_missing_driver_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from tenantry.db.urls import require_driver

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "psycopg" else real(name, *a)
    )
    with pytest.raises(ConfigurationError) as err:
        require_driver(parse_url("postgresql://u@h/db"))
    assert "pip install 'tenantry[postgres]'" in (err.value.hint or "")
    require_driver(parse_url("mysql://u@h/db"))  # installed: no error


@pytest.mark.parametrize(
    "raw",
    [
        "postgresql://admin:ab@cd/Zq7xK9wJ@127.0.0.1:5432/postgres",
        "postgresql://u:p@127.0.0.1:Zq7xK9wJ/x",
        "postgresql://admin:Zq7xK9wJ/postgres",
    ],
)
@pytest.mark.parametrize("variable", ["DATABASE_URL", "DATABASE_URL_BILLING"])
def test_url_settings_errors_name_the_variable_and_no_part_of_the_password(
    monkeypatch: pytest.MonkeyPatch, variable: str, raw: str
) -> None:
    monkeypatch.setenv(variable, raw)
    with pytest.raises(ConfigurationError) as err:
        load_settings()
    assert err.value.message.startswith(f"{variable} ")
    for piece in ("Zq7", "7xK", "K9w", "9wJ"):
        assert piece not in str(err.value)
