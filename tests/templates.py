"""Databases at head, copied from one migrated once per test process.

Migrating master, billing or a tenant schema for every test was a large share of the suite's
time on the servers (an Alembic run is dozens of DDL statements). A copy is what the migration
would have made, with an instance id of its own:

- SQLite: the template file, copied;
- PostgreSQL: ``CREATE DATABASE … TEMPLATE`` (the template has no other session: it is this
  process's own, made and dropped here);
- MariaDB: each table's ``SHOW CREATE TABLE`` replayed (keys, indexes and foreign keys
  included), then its rows copied.

Tests of migrating itself keep calling ``schema_ops.migrate``; these copies are for tests whose
subject is something else.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sqlite3
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import inspect, text, update
from sqlalchemy.engine import URL

from tenantry.db.admin import create_database, database_exists, drop_database
from tenantry.db.engines import make_engine, sqlite_path
from tenantry.db.identity import IDENTITY_TABLE, identity_table
from tenantry.db.schemas import SchemaSpec
from tenantry.files import private_dir, private_file
from tenantry.services import schema_ops

#: (backend, schema, owner) → the template: a file on SQLite, a database URL on a server.
_TEMPLATES: dict[tuple[str, str, str], URL] = {}


def migrated_database(url: URL, spec: SchemaSpec, *, owner: str = "tenantry") -> None:
    """Make ``url`` (which must not exist yet) a database of ``spec`` at head, as
    ``schema_ops.migrate`` would with ``acting_app=owner``, copied from a template."""
    backend = url.get_backend_name()
    template = _template(backend, spec, owner, like=url)
    path = sqlite_path(url)
    if path is not None:
        template_path = sqlite_path(template)
        assert template_path is not None
        private_dir(path.parent)
        shutil.copyfile(template_path, path)
        private_file(path)
        with sqlite3.connect(path) as conn:
            conn.execute(
                f"UPDATE {IDENTITY_TABLE} SET instance_id = ?, created_at = ?",
                (str(uuid.uuid4()), datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")),
            )
        conn.close()
        return
    _drop_if_empty(url)  # made by a `new_database` fixture: the copy takes its place
    if backend == "postgresql":
        _create_from_template(url, template)
    else:
        _copy_mariadb(template, url)
    _new_instance(url)


def _template(backend: str, spec: SchemaSpec, owner: str, *, like: URL) -> URL:
    key = (backend, spec.name, owner)
    template = _TEMPLATES.get(key)
    if template is not None:
        return template
    name = f"tt_tpl_{spec.name}_{owner}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    if sqlite_path(like) is not None:
        folder = Path(tempfile.mkdtemp(prefix="tenantry-tpl-"))
        template = URL.create("sqlite+pysqlite", database=str(folder / f"{name}.db"))
    else:
        template = like.set(database=name)
    migrate_here(template, spec, owner=owner)
    _TEMPLATES[key] = template
    return template


def migrate_here(url: URL, spec: SchemaSpec, *, owner: str = "tenantry") -> None:
    """Create ``url`` unless it exists and migrate it to ``spec``'s head, with no template."""
    create_database(url)
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            schema_ops.migrate(conn, spec, "fixture", acting_app=owner, owner=owner)
    finally:
        engine.dispose()


def _drop_if_empty(url: URL) -> None:
    if not database_exists(url):
        return
    engine = make_engine(url, pooled=False)
    try:
        with engine.connect() as conn:
            tables = inspect(conn).get_table_names()
    finally:
        engine.dispose()
    if tables:
        raise AssertionError(f"{url.database} already holds tables {tables}: not a new database")
    drop_database(url)


def _create_from_template(url: URL, template: URL) -> None:
    server = make_engine(url.set(database="postgres"), pooled=False)
    try:
        with server.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f'CREATE DATABASE "{url.database}" TEMPLATE "{template.database}"'))
    finally:
        server.dispose()


def _copy_mariadb(template: URL, url: URL) -> None:
    create_database(url)
    engine = make_engine(url, pooled=False)
    try:
        with engine.begin() as conn:
            conn.execute(text("SET FOREIGN_KEY_CHECKS = 0"))
            tables = conn.execute(
                text(
                    "SELECT table_name FROM information_schema.tables "
                    "WHERE table_schema = :db AND table_type = 'BASE TABLE'"
                ),
                {"db": template.database},
            ).scalars()
            for table in list(tables):
                source = f"`{template.database}`.`{table}`"
                create = conn.execute(text(f"SHOW CREATE TABLE {source}")).one()[1]
                conn.execute(text(create))  # unqualified: made in ``url``'s database
                conn.execute(text(f"INSERT INTO `{table}` SELECT * FROM {source}"))
            conn.execute(text("SET FOREIGN_KEY_CHECKS = 1"))
    finally:
        engine.dispose()


def _new_instance(url: URL) -> None:
    engine = make_engine(url, pooled=False)
    try:
        with engine.begin() as conn:
            conn.execute(
                update(identity_table).values(
                    instance_id=str(uuid.uuid4()), created_at=datetime.now(UTC)
                )
            )
    finally:
        engine.dispose()


@atexit.register
def drop_templates() -> None:
    """Drop this process's templates (at its exit, or before: the suite's leak check)."""
    while _TEMPLATES:
        _key, template = _TEMPLATES.popitem()
        path = sqlite_path(template)
        if path is not None:
            shutil.rmtree(path.parent, ignore_errors=True)
        else:
            drop_database(template)
