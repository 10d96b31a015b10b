"""A MariaDB login of its own for a test (never the shared root), dropped after it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy.engine import URL

from tenantry.db.engines import make_engine
from tenantry.db.urls import parse_url
from tests.conftest import SERVER_URLS, require_server


@dataclass(frozen=True)
class MysqlLogin:
    """A login (host ``%``), its password and the server's root URL."""

    name: str
    password: str
    admin: URL

    def url(self, database: str | None = None) -> URL:
        """The server (or ``database`` on it) as this login."""
        url = self.admin.set(username=self.name, password=self.password)
        return url.set(database=database) if database else url._replace(database=None)

    def as_admin(self, sql: str) -> None:
        """Run ``sql`` as root."""
        engine = make_engine(self.admin, pooled=False)
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql(sql.replace("%", "%%"))  # PyMySQL's paramstyle
                conn.commit()
        finally:
            engine.dispose()


@contextmanager
def mysql_login(*grants: str) -> Iterator[MysqlLogin]:
    """A fresh login with only ``grants`` (e.g. ``"SELECT ON db.*"``); dropped afterwards."""
    require_server("mysql")
    admin = parse_url(SERVER_URLS["mysql"])
    login = MysqlLogin(f"tt_my_{uuid.uuid4().hex[:10]}", f"pw-{uuid.uuid4().hex}", admin)
    login.as_admin(f"CREATE USER '{login.name}'@'%' IDENTIFIED BY '{login.password}'")
    try:
        for grant in grants:
            login.as_admin(f"GRANT {grant} TO '{login.name}'@'%'")
        yield login
    finally:
        login.as_admin(f"DROP USER IF EXISTS '{login.name}'@'%'")
