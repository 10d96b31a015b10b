"""``tenantry access grant|revoke``: database logins for people and tools (seed 004).

Granting creates one login (one password) on every server the scope reaches, grants the
level on each database, then records the role in master and the audit log; if any step
fails, the logins created so far are dropped again, so nothing is left half-made. The
password is returned to be shown once: master never holds it. Revoking drops the login on
every server the role was recorded on (with its privileges and sessions) and marks it
revoked.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass, field

from sqlalchemy.engine import URL

from tenantry.db import login_secrets, logins
from tenantry.errors import Conflict, TenantryError
from tenantry.runtime import Platform
from tenantry.services import access
from tenantry.services.access import AccessTarget, server_key


@dataclass(frozen=True)
class Granted:
    """A new role and its credentials (the one time they are shown)."""

    name: str
    scope: str
    level: str
    password: str
    #: One URL per database, with the password.
    urls: list[str]
    databases: list[str]
    #: SQLite databases the scope left out (labels).
    skipped: list[str] = field(default_factory=list)


def grant_access(
    platform: Platform, scope: str, level: str, name: str | None = None, *, actor: str
) -> Granted:
    """Create login ``name`` (or a generated one) with ``level`` on every database of
    ``scope`` and record it (see the module docstring)."""
    checked = logins.check_level(level)
    login = logins.check_login_name(name or access.default_name(checked))
    with platform.sessions() as session:
        access.ensure_free(session, login)
        targets, skipped = access.scope_targets(session, platform.box, platform.settings, scope)
    servers = _one_per_server(targets)
    for admin in servers:  # before creating anything: a clash anywhere refuses the grant
        if logins.login_exists(admin, login):
            raise Conflict(
                f"a login named {login!r} exists already on {server_key(admin)}.",
                "Choose another --name; tenantry never takes over a login it did not create.",
            )
    password = login_secrets.generate_password()
    created: list[URL] = []
    try:
        for admin in servers:
            logins.create_login(admin, login, password)
            created.append(admin)
        for target in targets:
            logins.grant(target.admin_url, target.database, login, checked)
        with platform.writer_sessions() as session:
            access.record_grant(
                session, name=login, scope=scope, level=checked, targets=targets, actor=actor
            )
            session.commit()
    except BaseException:
        for admin in created:
            # The original error matters more; a login left behind would hold no grant.
            with suppress(TenantryError):
                logins.drop_login(admin, login)
        raise
    urls = [
        logins.login_url(t.admin_url, t.database, login, password).render_as_string(
            hide_password=False
        )
        for t in targets
    ]
    return Granted(login, scope, checked, password, urls, [t.database for t in targets], skipped)


def revoke_access(platform: Platform, name: str, *, actor: str) -> list[str]:
    """Drop the login of the active role ``name`` on every server it was created on and
    mark it revoked; the servers it was dropped on."""
    with platform.sessions() as session:
        role = access.get_active_role(session, name)
        admins = access.admin_urls(session, platform.box, platform.settings, role.servers)
    unreachable = sorted(set(role.servers) - {server_key(a) for a in admins})
    if unreachable:
        raise Conflict(
            f"role {name!r} was created on {', '.join(unreachable)}, which tenantry can no "
            "longer reach with a login that may drop it.",
            "Register that server again (tenantry servers add) or drop the login there by hand.",
        )
    dropped = []
    for admin in admins:
        logins.drop_login(admin, role.name)
        dropped.append(server_key(admin))
    with platform.writer_sessions() as session:
        access.record_revoke(
            session, access.get_active_role(session, name), dropped_on=dropped, actor=actor
        )
        session.commit()
    return dropped


def _one_per_server(targets: list[AccessTarget]) -> list[URL]:
    found: dict[str, URL] = {}
    for target in targets:
        found.setdefault(server_key(target.admin_url), target.admin_url)
    return list(found.values())
