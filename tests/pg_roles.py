"""A PostgreSQL login that is not a superuser (CREATEDB only), for tests of what tenantry
does without the privileges a superuser has; dropped with its databases after the test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import URL

from tenantry.db.admin import drop_database
from tenantry.db.engines import make_engine
from tenantry.db.urls import parse_url
from tests.conftest import SERVER_URLS, require_server


@dataclass(frozen=True)
class PgLogin:
    """A non-superuser login and the superuser URL of the same server."""

    name: str
    password: str
    admin: URL

    def url(self, database: str) -> URL:
        """``database`` on the server, as this login."""
        return self.admin.set(username=self.name, password=self.password, database=database)

    def as_admin(self, sql: str, database: str) -> None:
        """Run ``sql`` in ``database`` as the superuser."""
        engine = make_engine(self.admin.set(database=database), pooled=False)
        try:
            with engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT").execute(text(sql))
        finally:
            engine.dispose()


@contextmanager
def unprivileged_login(*, createrole: bool = False) -> Iterator[PgLogin]:
    """A fresh ``LOGIN CREATEDB NOSUPERUSER`` role (``CREATEROLE`` too when asked: what a
    registered server's admin login needs to give stores runtime logins); afterwards every
    database it owns and the role itself are dropped."""
    require_server("postgresql")
    admin = parse_url(SERVER_URLS["postgresql"])
    login = PgLogin(f"tt_nosuper_{uuid.uuid4().hex[:10]}", f"pw-{uuid.uuid4().hex}", admin)
    login.as_admin(
        f"CREATE ROLE {login.name} LOGIN CREATEDB {'CREATEROLE ' if createrole else ''}"
        f"NOSUPERUSER PASSWORD '{login.password}'",
        "postgres",
    )
    try:
        yield login
    finally:
        engine = make_engine(admin, pooled=False)
        try:
            with engine.connect() as conn:
                owned = conn.execute(
                    text(
                        "SELECT datname FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba "
                        "WHERE r.rolname = :role"
                    ),
                    {"role": login.name},
                ).scalars()
                names = list(owned)
        finally:
            engine.dispose()
        for name in names:
            drop_database(admin.set(database=name))
        login.as_admin(f"DROP ROLE IF EXISTS {login.name}", "postgres")
