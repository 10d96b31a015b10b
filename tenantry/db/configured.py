"""Which database a role-level command acts on: the role's configured URL, or ``--url``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Connection
from sqlalchemy.engine import URL

from tenantry.db.engines import connect, make_engine, sqlite_path
from tenantry.db.schemas import Role, SchemaSpec, schema_for
from tenantry.db.urls import mask, parse_url
from tenantry.errors import ConfigurationError, DatabaseUnreachable
from tenantry.files import private_dir
from tenantry.settings import Settings


@dataclass(frozen=True)
class Target:
    """One database and the schema it should hold."""

    spec: SchemaSpec
    url: URL

    @property
    def shown(self) -> str:
        """The URL with its password masked."""
        return mask(self.url)


def target(settings: Settings, role: Role, url: str | None = None) -> Target:
    """The database ``role`` commands act on; ``url`` overrides the configured one."""
    spec = schema_for(role, settings.tenant_schema)
    if url:
        return Target(spec, parse_url(url, setting="--url"))
    if role is Role.MASTER:
        return Target(spec, settings.master_url)
    if role is Role.BILLING:
        return Target(spec, settings.billing_url)
    raise ConfigurationError(
        "a tenant database has no configured URL.",
        "Pass the tenant database with --url (fleet commands cover all tenants).",
    )


@contextmanager
def connection(t: Target, *, begin: bool = False, must_exist: bool = True) -> Iterator[Connection]:
    """Connect to the target; a missing SQLite file is an error unless ``must_exist`` is False."""
    path = sqlite_path(t.url)
    if must_exist and path is not None and not path.is_file():
        raise DatabaseUnreachable(
            f"the SQLite database {path} does not exist.",
            "Run `tenantry init` to create the master and billing databases.",
        )
    if path is not None:
        private_dir(path.parent)
    engine = make_engine(t.url, pool_size=1)
    try:
        with connect(engine, begin=begin) as conn:
            yield conn
    finally:
        engine.dispose()
