"""Database URLs: parsing, driver selection and masking of passwords."""

from __future__ import annotations

import importlib.util

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from tenantry.errors import ConfigurationError

#: The backends tenantry manages, keyed by the scheme a user may write, with the driver used.
DRIVERS: dict[str, str] = {
    "sqlite": "sqlite+pysqlite",
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
}
SUPPORTED_DRIVERS = {"pysqlite", "psycopg", "pymysql"}


def parse_url(raw: str, *, setting: str = "database URL") -> URL:
    """Parse ``raw`` into a SQLAlchemy URL with tenantry's driver for its backend.

    ``postgresql://`` becomes ``postgresql+psycopg://`` and ``mysql://`` becomes
    ``mysql+pymysql://``. Raises :class:`ConfigurationError` naming ``setting`` for anything
    that is not a SQLite, PostgreSQL or MySQL/MariaDB URL.
    """
    example = (
        "Use e.g. sqlite:///path/to.db, postgresql://user:pass@host:5432/name "
        "or mysql://user:pass@host:3306/name."
    )
    try:
        url = make_url(raw.strip())
    except ArgumentError:
        raise ConfigurationError(
            f"{setting} is not a valid database URL: {mask_raw(raw)!r}.", example
        ) from None
    backend, _, driver = url.drivername.partition("+")
    if backend not in DRIVERS:
        raise ConfigurationError(
            f"{setting} uses the unsupported backend {backend!r}; tenantry supports "
            "sqlite, postgresql and mysql/mariadb.",
            example,
        )
    if driver and driver not in SUPPORTED_DRIVERS:
        raise ConfigurationError(
            f"{setting} asks for the driver {driver!r}, which tenantry does not ship.",
            f"Drop '+{driver}' from the URL; tenantry picks {DRIVERS[backend]}.",
        )
    url = url.set(drivername=DRIVERS[backend])
    if backend == "sqlite":
        if not url.database or url.database == ":memory:":
            raise ConfigurationError(
                f"{setting} names no SQLite file: {raw!r}.",
                "Give a path, e.g. sqlite:///./.tenantry/master.db.",
            )
    elif not url.database:
        raise ConfigurationError(
            f"{setting} names no database: {mask(url)!r}.",
            "Add the database name after the host, e.g. postgresql://host:5432/master.",
        )
    return url


_DRIVER_MODULES = {"psycopg": ("psycopg", "postgres"), "pymysql": ("pymysql", "mysql")}


def require_driver(url: URL) -> None:
    """Raise a clear error when the driver for ``url`` is not installed."""
    driver = url.get_driver_name()
    if driver not in _DRIVER_MODULES:
        return
    module, extra = _DRIVER_MODULES[driver]
    if importlib.util.find_spec(module) is None:
        raise ConfigurationError(
            f"the {backend_of(url)} driver ({module}) is not installed.",
            f"Install it with: pip install 'tenantry[{extra}]' (or 'tenantry[all]').",
        )


def backend_of(url: URL) -> str:
    """``sqlite``, ``postgresql`` or ``mysql`` (MariaDB counts as mysql)."""
    name = url.get_backend_name()
    return "mysql" if name == "mariadb" else name


def mask(url: URL) -> str:
    """The URL as text with its password replaced by ``***``."""
    return url.render_as_string(hide_password=True)


def mask_raw(raw: str) -> str:
    """Best-effort masking for text that failed to parse as a URL."""
    head, sep, tail = raw.partition("://")
    if not sep or "@" not in tail:
        return raw
    creds, _, rest = tail.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{head}://{user}:***@{rest}" if ":" in creds else raw
