"""A fresh tenantry installation (data dir, key file, master and billing at head) per test."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from tenantry.crypto import ensure_key_file
from tenantry.db.admin import create_database
from tenantry.db.engines import make_engine, sqlite_path
from tenantry.db.schemas import SchemaSpec, billing_schema, master_schema
from tenantry.files import private_dir, private_file
from tenantry.runtime import Platform
from tenantry.services import schema_ops
from tenantry.settings import Settings, load_settings

ENV_VARS = (
    "DATABASE_URL",
    "DATABASE_URL_BILLING",
    "TENANTRY_DATA_DIR",
    "TENANTRY_SECRET_KEYS",
    "TENANTRY_QUEUE_URL",
    "TENANTRY_QUEUE_NAME",
    "TENANTRY_APP",
    "TENANTRY_TENANT_SCHEMA",
    "TENANTRY_FAILPOINTS",
    "TENANTRY_JOB_LEASE_SECONDS",
)


def install(settings: Settings) -> None:
    """What `tenantry init` does, for fixtures."""
    ensure_key_file(settings.key_file)
    for spec, url in (
        (master_schema(), settings.master_url),
        (billing_schema(), settings.billing_url),
    ):
        path = sqlite_path(url)
        if path is not None:
            _copy_migrated(spec, path)
        else:
            _migrate(spec, url)


def _migrate(spec: SchemaSpec, url: URL) -> None:
    create_database(url)
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            schema_ops.migrate(conn, spec, "fixture", acting_app="tenantry", owner="tenantry")
    finally:
        engine.dispose()


_TEMPLATES: dict[str, Path] = {}


def _copy_migrated(spec: SchemaSpec, path: Path) -> None:
    """A SQLite database of ``spec`` at head, as ``_migrate`` makes it, copied from one
    migrated once per test process (migrating master and billing for every test was a large
    share of the suite's time); the copy gets an instance id of its own."""
    template = _TEMPLATES.get(spec.name)
    if template is None:
        template = Path(tempfile.mkdtemp(prefix="tenantry-tpl-")) / f"{spec.name}.db"
        _migrate(spec, URL.create("sqlite+pysqlite", database=str(template)))
        _TEMPLATES[spec.name] = template
    private_dir(path.parent)
    shutil.copyfile(template, path)
    private_file(path)
    with sqlite3.connect(path) as conn:
        conn.execute(
            "UPDATE tenantry_identity SET instance_id = ?, created_at = ?",
            (str(uuid.uuid4()), datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")),
        )
    conn.close()


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings of a fresh, initialised installation in a temp data dir (env cleaned)."""
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TENANTRY_DATA_DIR", str(tmp_path / "data"))
    current = load_settings()
    install(current)
    return current


@pytest.fixture
def platform(settings: Settings) -> Iterator[Platform]:
    """The installation's platform, closed after the test."""
    opened = Platform.open(settings)
    yield opened
    opened.close()
