"""`tenantry init` and `tenantry db status` as a new user runs them, on every backend."""

from __future__ import annotations

import stat
from pathlib import Path

from tenantry.db import migrations
from tenantry.db.engines import make_engine
from tenantry.db.schemas import billing_schema, master_schema
from tenantry.db.urls import backend_of, mask, parse_url
from tests.cli.conftest import Invoke, as_json
from tests.conftest import DbFactory
from tests.helpers import schema_snapshot


def _server_env(backend: str, new_database: DbFactory) -> dict[str, str]:
    """Fresh (not yet created) master and billing databases; SQLite uses the data dir."""
    if backend == "sqlite":
        return {}
    master = new_database("master", create=False)
    billing = new_database("billing", create=False)
    return {
        "DATABASE_URL": master.render_as_string(hide_password=False),
        "DATABASE_URL_BILLING": billing.render_as_string(hide_password=False),
    }


def test_init_creates_everything_once(
    cli: Invoke, backend: str, new_database: DbFactory, tmp_path: Path
) -> None:
    env = _server_env(backend, new_database)
    first = cli("init", "--json", env=env)
    assert first.exit_code == 0, first.output
    report = as_json(first)
    assert report["master"]["identity_stamped"]
    assert report["billing"]["identity_stamped"]
    assert report["master"]["revision"] == migrations.head(master_schema())
    assert report["billing"]["revision"] == migrations.head(billing_schema())
    key_file = tmp_path / "data" / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    key_before = key_file.read_bytes()
    second = cli("init", "--json", env=env)
    assert second.exit_code == 0, second.output
    again = as_json(second)
    assert again["changes"] == []
    assert not again["master"]["database_created"]
    assert again["master"]["applied"] == []
    assert key_file.read_bytes() == key_before

    status = cli("db", "status", "--json", env=env)
    assert status.exit_code == 0, status.output
    doc = as_json(status)
    assert set(doc) == {"master", "billing"}
    for role in ("master", "billing"):
        assert doc[role]["role"] == role
        assert doc[role]["current"] == doc[role]["head"]
        assert doc[role]["head"] is not None
        assert doc[role]["pending"] == 0
        assert backend_of_url(doc[role]["url"]) == backend
    assert doc["master"]["instance_id"] != doc["billing"]["instance_id"]


def backend_of_url(text: str) -> str:
    return backend_of(parse_url(text))


def test_status_before_init_reports_pending_without_creating(cli: Invoke, tmp_path: Path) -> None:
    result = cli("db", "status", "--json")
    assert result.exit_code == 0, result.output
    doc = as_json(result)
    assert doc["master"]["exists"] is False
    assert doc["master"]["pending"] == len(
        migrations.between(master_schema(), None, doc["master"]["head"])
    )
    assert doc["master"]["pending"] >= 1
    assert not (tmp_path / "data" / "master.db").exists()


def test_billing_url_on_master_database_is_refused_and_master_unchanged(
    cli: Invoke, backend: str, new_database: DbFactory, tmp_path: Path
) -> None:
    env = _server_env(backend, new_database)
    assert cli("init", env=env).exit_code == 0
    master_url = env.get("DATABASE_URL") or f"sqlite:///{tmp_path / 'data' / 'master.db'}"
    engine = make_engine(parse_url(master_url))
    try:
        with engine.connect() as conn:
            before = schema_snapshot(conn)
        wrong = {**env, "DATABASE_URL_BILLING": master_url}
        result = cli("db", "migrate", "--role", "billing", env=wrong)
        assert result.exit_code == 3
        assert "expected a billing database" in result.stderr
        assert "found a master database" in result.stderr
        assert "Traceback" not in result.output
        with engine.connect() as conn:
            assert schema_snapshot(conn) == before
    finally:
        engine.dispose()


def test_unreachable_server_is_one_paragraph_without_secrets(cli: Invoke) -> None:
    env = {"DATABASE_URL": "postgresql://admin:hunter2@127.0.0.1:1/master"}
    result = cli("db", "migrate", "--role", "master", env=env)
    assert result.exit_code != 0
    assert "cannot connect to postgresql+psycopg://admin:***@127.0.0.1:1/master" in result.stderr
    assert "hunter2" not in result.output
    assert "Traceback" not in result.output

    status = cli("db", "status", "--json", env=env)
    assert status.exit_code == 1
    doc = as_json(status)
    assert "cannot connect" in doc["master"]["error"]
    assert "hunter2" not in status.output


def test_malformed_url_names_the_setting(cli: Invoke) -> None:
    result = cli("db", "status", env={"DATABASE_URL_BILLING": "billing-db:3306"})
    assert result.exit_code == 2
    assert "DATABASE_URL_BILLING" in result.stderr
    bad_backend = cli("db", "status", "--json", env={"DATABASE_URL": "oracle://u:pw@h/db"})
    assert bad_backend.exit_code == 2
    error = as_json(bad_backend)["error"]
    assert "unsupported backend 'oracle'" in error["message"]
    assert "pw" not in bad_backend.output.replace("postgresql", "")


def test_mask_hides_password() -> None:
    assert mask(parse_url("mysql://u:s3cret@h/db")) == "mysql+pymysql://u:***@h/db"
