"""``tenantry servers rotate-credentials``: a registered server's admin login gets a new
password, on the server and in master.

The order keeps the login usable whatever fails: the server accepts the new password first
(its sessions already open keep working), then a new connection proves it, then master
stores it sealed in one transaction (with the store connections that use the same login,
see :func:`tenantry.services.servers.record_rotated_credentials`). If the proof or the
commit fails, the old password is put back on the server, so the URL master still holds
works. Cached server engines are disposed at the end; other processes read the new URL from
master the next time they open one (their open sessions are unaffected).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import URL

from tenantry.db.admin import dispose_server_engines
from tenantry.db.engines import connect, make_engine
from tenantry.db.own_password import change_own_password, new_password
from tenantry.db.types import utcnow
from tenantry.db.urls import mask
from tenantry.failpoints import failpoint
from tenantry.runtime import Platform
from tenantry.services import servers
from tenantry.services.connections import server_url


@dataclass(frozen=True)
class Rotated:
    """What a rotation changed (never the password)."""

    server: str
    url: str
    connections_updated: int
    rotated_at: str


def rotate_server_credentials(platform: Platform, name: str, *, actor: str) -> Rotated:
    """Give server ``name``'s admin login a new random password and store it (see module)."""
    with platform.writer_sessions() as session:
        server = servers.get_server(session, name)
        old_url = server_url(platform.box, server)
        password = new_password()
        new_url = old_url.set(password=password)
        change_own_password(old_url, password)
        try:
            _prove(new_url)
            updated = servers.record_rotated_credentials(
                session, platform.box, server, new_url, actor=actor
            )
            failpoint("servers.rotate.commit")
            session.commit()
        except BaseException:
            session.rollback()
            if old_url.password is not None:
                # Master still holds the old URL: make it the server's truth again.
                change_own_password(new_url, str(old_url.password))
            raise
    dispose_server_engines()
    return Rotated(name, mask(new_url), updated, utcnow().isoformat())


def _prove(url: URL) -> None:
    """A new session logs in with the new password (raises when it cannot)."""
    engine = make_engine(url, pooled=False)
    try:
        with connect(engine) as conn:
            conn.execute(text("SELECT 1"))
    finally:
        engine.dispose()
