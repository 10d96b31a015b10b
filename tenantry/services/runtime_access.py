"""A store's runtime access: the database login routing uses, with ``service`` grants only.

Each store created on a PostgreSQL or MySQL/MariaDB server gets two logins on that server,
``<base>_a`` and ``<base>_b`` (AWS's "alternating users" rotation): the store's connection
uses one; a rotation sets a new password on the other, grants it, and switches the
connection to it, so the previous one keeps working for connections already open until the
next rotation. Migrations, backups, restores, moves and drops go through the server's admin
URL instead (:func:`tenantry.services.connections.migrator_url`).

Server DDL, not master writes: the caller saves what :func:`ensure_runtime_access` returns.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import URL

from tenantry.crypto import SecretBox
from tenantry.db import logins
from tenantry.db.master.models import AccessMode, IntegrationConfig
from tenantry.db.types import utcnow
from tenantry.db.urls import backend_of
from tenantry.services.connections import split_url

#: The two alternating logins of a store.
SUFFIXES = ("_a", "_b")


@dataclass(frozen=True)
class RuntimeAccess:
    """A runtime login just given a new password: the connection to save for the store."""

    login: str
    config_data: dict[str, Any]
    secret: str | None
    #: Created by this call, not given a new password: it holds no privilege anywhere yet.
    created: bool = False


def login_base(slug: str, store_id: uuid.UUID) -> str:
    """The stem of a store's login names: readable, unique per store, short enough for
    MySQL's 32 characters with a suffix (``t_<slug, 16 chars>_<id, 8 hex>``)."""
    stem = re.sub(r"[^a-z0-9]", "_", slug.lower())[:16]
    return f"t_{stem}_{store_id.hex[:8]}"


def store_logins(slug: str, store_id: uuid.UUID) -> list[str]:
    """Both login names of a store."""
    base = login_base(slug, store_id)
    return [base + suffix for suffix in SUFFIXES]


def next_login(slug: str, store_id: uuid.UUID, current: str | None) -> str:
    """The login a rotation (or a move) gives the store: the one ``current`` is not."""
    names = store_logins(slug, store_id)
    return names[1] if current == names[0] else names[0]


def uses_logins(url: URL) -> bool:
    """Whether databases at ``url`` get runtime logins (every server backend, not SQLite)."""
    return backend_of(url) != "sqlite"


def current_login(config: IntegrationConfig | None) -> str | None:
    """The runtime login ``config`` connects as, or ``None`` (no runtime login)."""
    if config is None or config.access_mode != AccessMode.RUNTIME_LOGIN:
        return None
    username = config.config_data.get("username")
    return str(username) if username else None


def ensure_runtime_access(
    box: SecretBox,
    migrator: URL,
    slug: str,
    store_id: uuid.UUID,
    current: str | None,
    *,
    rotate: bool = False,
) -> RuntimeAccess | None:
    """Ensure store ``slug``'s runtime access on the database ``migrator`` (an admin URL) names.

    With ``current`` (the login the store uses on that server) and no ``rotate``: grant
    ``service`` to it (and to its alternate, when it exists) on the database, keeping its
    password; returns ``None``, nothing to save. Otherwise (no login yet there, or a
    rotation): the login that is not ``current`` is created or given a new password and
    granted; returns the connection to save, which routers pick up once the store's
    ``connection_version`` is bumped. A move passes the source's login with ``rotate``: the
    target gets the other one, so a source on the same server keeps its password.
    """
    database = str(migrator.database)
    names = store_logins(slug, store_id)
    if current is not None and current not in names:
        current = None  # a login of another naming (a renamed store): start afresh
    if current is not None and not rotate:
        grant_current(migrator, slug, store_id, current)
        return None
    chosen = next_login(slug, store_id, current)
    access = make_login(box, migrator, chosen)
    logins.grant(migrator, database, chosen, "service")
    if current is not None and logins.login_exists(migrator, current):
        logins.grant(migrator, database, current, "service")  # it drains on the same grants
    return access


def make_login(box: SecretBox, migrator: URL, login: str) -> RuntimeAccess:
    """Create ``login`` on the server of ``migrator`` (an admin URL naming the store's
    database), or give it a new password when it exists, granting nothing: the caller
    grants it (:func:`tenantry.db.logins.grant`, or ``grant_in`` within its own transaction
    there). The connection to save."""
    created = not logins.login_exists(migrator, login)
    if created:
        password = logins.create_login(migrator, login)
    else:
        password = logins.set_password(migrator, login)
    url = logins.login_url(migrator, str(migrator.database), login, password)
    config_data, secret = split_url(box, url)
    return RuntimeAccess(login, config_data, secret, created)


def grant_current(migrator: URL, slug: str, store_id: uuid.UUID, current: str) -> None:
    """Grant ``service`` on the database ``migrator`` names to the store's login ``current``
    and to its alternate when that exists (it may still serve connections opened before the
    last rotation); passwords unchanged."""
    for name in store_logins(slug, store_id):
        if name == current or logins.login_exists(migrator, name):
            logins.grant(migrator, str(migrator.database), name, "service")


def save_access(config: IntegrationConfig, access: RuntimeAccess) -> None:
    """Point ``config`` at the runtime login of ``access`` (in the caller's transaction; the
    caller bumps the store's ``connection_version``)."""
    config.config_data = access.config_data
    config.secret_encrypted = access.secret
    config.access_mode = AccessMode.RUNTIME_LOGIN
    config.can_ddl = False
    config.credentials_rotated_at = utcnow()


def drop_store_logins(admin_url: URL, slug: str, store_id: uuid.UUID) -> list[str]:
    """Drop both of the store's logins on the server of ``admin_url``; those dropped."""
    if not uses_logins(admin_url):
        return []
    return [name for name in store_logins(slug, store_id) if logins.drop_login(admin_url, name)]
