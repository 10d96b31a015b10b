"""The template databases new tenant databases are cloned from, and which of them are stale.

:mod:`tenantry.db.builder` keeps one template per tenant schema and head revision
(``tenantry_tpl_<schema>_<rev>``): a PostgreSQL database on each server it provisions on, or
a SQLite file in ``$TENANTRY_DATA_DIR/templates``. After a new revision the old template is
never used again, and a build killed half-way leaves ``tenantry_tpl_tmp_…`` (a temporary file
``tmp….db`` on SQLite). Those are stale. Templates of another schema are another
installation's (or plug-in's) business and are left alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import URL

from tenantry.db import admin, migrations
from tenantry.db.builder import template_name
from tenantry.db.engines import connect, make_engine
from tenantry.db.schemas import SchemaSpec
from tenantry.db.urls import backend_of

TEMPLATE_PREFIX = "tenantry_tpl_"
TMP_PREFIX = "tenantry_tpl_tmp_"
#: A SQLite template being built is a ``tmp*.db`` file younger than this: left alone.
SQLITE_BUILD_GRACE_S = 600.0

CURRENT, OLD_REVISION, LEFTOVER, OTHER = (
    "current head",
    "older revision",
    "leftover of an interrupted build",
    "another schema's",
)


@dataclass(frozen=True)
class TemplateDatabase:
    """One template database (or file) and whether it is stale."""

    #: Where it lives: a registered server's name, or ``sqlite`` (the template dir).
    where: str
    name: str
    kind: str  # CURRENT, OLD_REVISION, LEFTOVER or OTHER
    #: Connections are open to it (a build or a clone runs now): never dropped.
    in_use: bool = False

    @property
    def stale(self) -> bool:
        """Not the current head's template, nor another schema's."""
        return self.kind in (OLD_REVISION, LEFTOVER)

    @property
    def prunable(self) -> bool:
        """Stale and not in use."""
        return self.stale and not self.in_use


def classify(name: str, spec: SchemaSpec) -> str | None:
    """What the database called ``name`` is to ``spec`` (None: not a template at all)."""
    if not name.startswith(TEMPLATE_PREFIX):
        return None
    if name.startswith(TMP_PREFIX):
        return LEFTOVER
    if name == template_name(spec):
        return CURRENT
    own = f"{TEMPLATE_PREFIX}{spec.name}_"
    revision = name[len(own) :] if name.startswith(own) else ""
    if revision and (revision == "base" or migrations.known(spec, revision)):
        return OLD_REVISION
    return OTHER


def server_templates(server: URL, spec: SchemaSpec, where: str) -> list[TemplateDatabase]:
    """The template databases on the server of ``server`` (PostgreSQL or MySQL/MariaDB)."""
    postgresql = backend_of(server) == "postgresql"
    if postgresql:
        query = text(
            "SELECT d.datname, (SELECT count(*) FROM pg_stat_activity a "
            "WHERE a.datname = d.datname) FROM pg_database d "
            "WHERE d.datname LIKE 'tenantry\\_tpl\\_%' ORDER BY d.datname"
        )
        url = server.set(database="postgres")
    else:
        query = text(
            "SELECT s.schema_name, (SELECT count(*) FROM information_schema.processlist p "
            "WHERE p.db = s.schema_name) FROM information_schema.schemata s "
            "WHERE s.schema_name LIKE 'tenantry\\_tpl\\_%' ORDER BY s.schema_name"
        )
        url = server._replace(database=None)
    engine = make_engine(url, pooled=False)
    try:
        with connect(engine) as conn:
            rows = conn.execute(query).all()
    finally:
        engine.dispose()
    found = []
    for name, sessions in rows:
        kind = classify(str(name), spec)
        if kind is not None:
            found.append(TemplateDatabase(where, str(name), kind, int(sessions or 0) > 0))
    return found


def sqlite_templates(template_dir: Path, spec: SchemaSpec) -> list[TemplateDatabase]:
    """The template files in ``template_dir`` (SQLite), with interrupted builds' leftovers."""
    if not template_dir.is_dir():
        return []
    found = []
    now = time.time()
    for path in sorted(template_dir.glob("*.db")):
        if path.name.startswith("tmp"):
            # tempfile.mkstemp's name for a template being built; young means still building.
            building = now - path.stat().st_mtime < SQLITE_BUILD_GRACE_S
            found.append(TemplateDatabase("sqlite", path.name, LEFTOVER, building))
            continue
        kind = classify(path.stem, spec)
        if kind is not None:
            found.append(TemplateDatabase("sqlite", path.name, kind))
    return found


def drop_server_template(server: URL, name: str) -> bool:
    """Drop template database ``name`` on ``server``; True when it was there."""
    if not name.startswith(TEMPLATE_PREFIX):
        raise ValueError(f"{name!r} is not a template database")
    return admin.drop_database(server.set(database=name))


def drop_sqlite_template(template_dir: Path, name: str) -> bool:
    """Delete the template file ``name`` (and its journal files); True when it was there."""
    path = template_dir / name
    if path.parent != template_dir or path.suffix != ".db":
        raise ValueError(f"{name!r} is not a template file")
    return admin.drop_database(URL.create("sqlite+pysqlite", database=str(path)))
