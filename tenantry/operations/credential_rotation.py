"""Rotating stores' runtime credentials without a failed request (operation
``store_credentials``, one per store rotated).

Alternating logins (:mod:`tenantry.services.runtime_access`): the login the store does not use
gets a new password and the ``service`` grants, the store's connection switches to it and its
``connection_version`` is bumped, so every process's router opens a new engine on its next
request. The login used until now keeps its password until the next rotation, so the
connections already open (and pools still handing them out) drain instead of failing.

A store provisioned before runtime logins existed (served with its server's admin login) is
given its first runtime login the same way, when asked for by slug or with ``--all``: the
switch is the same, and the admin login it leaves is not touched.

A store is rotated under the lock ``store-credentials:<id>``: two rotations at once would
both pick the same login and the second would change the password the first just saved.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from tenantry.db.master.models import (
    AccessMode,
    DatabaseStatus,
    IntegrationConfig,
    OperationKind,
    Store,
)
from tenantry.db.types import utcnow
from tenantry.errors import Conflict, InvalidInput, TenantryError
from tenantry.operations.running import run_here
from tenantry.runtime import Platform
from tenantry.services import audit, runtime_access, stores
from tenantry.services.connections import migrator_url
from tenantry.services.write_blocks import active_block


@dataclass(frozen=True)
class Rotated:
    """One store's rotation: the login it uses now (``None`` when it failed) or the error."""

    slug: str
    login: str | None
    previous: str | None
    error: str | None = None

    def document(self) -> dict[str, Any]:
        """The outcome as JSON (no password anywhere)."""
        return {
            "store": self.slug,
            "rotated": self.error is None,
            "login": self.login,
            "previous_login": self.previous,
            "error": self.error,
        }


def due_stores(
    platform: Platform, *, older_than: timedelta | None, legacy: bool = False
) -> list[str]:
    """The active stores with a runtime login whose credentials were set longer than
    ``older_than`` ago (every one when ``None``), by slug; with ``legacy``, also those still
    served with their server's admin login (see :func:`_legacy`), which get their first."""
    reachable = IntegrationConfig.access_mode == AccessMode.RUNTIME_LOGIN
    if legacy:
        reachable = or_(
            reachable,
            and_(
                IntegrationConfig.access_mode.is_(None),
                IntegrationConfig.created_by_tenantry.is_(True),
                IntegrationConfig.database_server_id.is_not(None),
            ),
        )
    query = (
        select(Store.slug)
        .join(IntegrationConfig, IntegrationConfig.store_id == Store.id)
        .where(
            IntegrationConfig.is_active.is_(True),
            reachable,
            Store.database_status == DatabaseStatus.ACTIVE,
            Store.deleted_at.is_(None),
            # Shared-schema stores share their database's pool login: not rotated per store.
            IntegrationConfig.db_schema.is_(None),
        )
        .order_by(Store.slug)
    )
    if older_than is not None:
        cutoff = utcnow() - older_than
        query = query.where(
            or_(
                IntegrationConfig.credentials_rotated_at.is_(None),
                IntegrationConfig.credentials_rotated_at < cutoff,
            )
        )
    with platform.sessions() as session:
        return list(session.scalars(query))


def rotate_store(platform: Platform, ref: str, *, actor: str) -> Rotated:
    """Rotate store ``ref``'s runtime login (see the module); raises when it cannot be."""
    with platform.sessions() as session:
        store = stores.get_store(session, ref)
        slug, store_id = store.slug, store.id
    with run_here(
        platform.sessions,
        platform.settings,
        OperationKind.STORE_CREDENTIALS,
        store_id=store_id,
        target=slug,
        requested_by=actor,
    ) as running:
        lock = f"store-credentials:{store_id}"
        running.kit.acquire_lock(lock, operation_id=running.id)
        try:
            running.step("checking")
            with platform.sessions() as session:
                store = stores.get_store(session, store_id)
                config = _rotatable(session, store)
                migrator = migrator_url(session, platform.box, config)
                current = runtime_access.current_login(config)
                version = store.connection_version
            running.step("setting the new password")
            access = runtime_access.ensure_runtime_access(
                platform.box, migrator, slug, store_id, current, rotate=True
            )
            assert access is not None  # a rotation always makes one
            running.step("switching", cancellable=False)
            with platform.writer_sessions.begin() as session:
                locked = session.get(Store, store_id, with_for_update=True)
                live = stores.active_connection(session, locked) if locked else None
                if locked is None or live is None or locked.connection_version != version:
                    # The new password is on the login the store does not use: harmless.
                    raise Conflict(
                        f"store {slug!r}'s connection changed during the rotation "
                        "(a move or restore); nothing was switched.",
                        "Run the rotation again.",
                    )
                runtime_access.save_access(live, access)
                locked.connection_version += 1  # every router drops its engine
                audit.record(
                    session,
                    actor=actor,
                    action="store.credentials_rotated",
                    target_type="store",
                    target_id=slug,
                    store_id=store_id,
                    details={"login": access.login, "previous_login": current},
                )
        finally:
            running.kit.release_lock(lock)
    return Rotated(slug, access.login, current)


def _rotatable(session: Session, store: Store) -> IntegrationConfig:
    """The store's connection, when it has a runtime login that may be rotated now."""
    config = stores.active_connection(session, store)
    if config is None or store.database_status != DatabaseStatus.ACTIVE:
        raise Conflict(
            f"store {store.slug!r} has no active database ({store.database_status}).",
            "Only an active store's credentials are rotated.",
        )
    if config.db_schema:
        raise Conflict(
            f"store {store.slug!r} lives in schema {config.db_schema} of a shared database, "
            "reached through the login all of that database's stores share; per-store "
            "rotation does not apply (nothing was changed).",
            "Its access is its role, which has no password; rotating the shared pool login "
            "is not supported yet.",
        )
    if config.access_mode != AccessMode.RUNTIME_LOGIN and not _legacy(config):
        raise Conflict(
            f"store {store.slug!r} has no runtime login: it is reached with "
            + (
                "the URL it was connected with"
                if config.access_mode == AccessMode.GIVEN_URL
                else "a server login of a server no longer registered"
            )
            + ", which tenantry does not own.",
            "Rotate that password where it is managed, then update the store's connection; "
            "stores created on a registered server get runtime logins tenantry rotates.",
        )
    blocked = active_block(store)
    if blocked is not None:
        raise Conflict(
            f"store {store.slug!r}'s writes are blocked ({blocked}).",
            "Rotate once the move or restore in progress is over.",
        )
    return config


def _legacy(config: IntegrationConfig) -> bool:
    """Whether ``config`` is a store database tenantry created on a registered server before
    stores had runtime logins (it is reached with the server's admin login)."""
    return (
        config.access_mode is None
        and bool(config.created_by_tenantry)
        and config.database_server_id is not None
        and config.config_data.get("engine") not in (None, "sqlite")
    )


def rotate_many(platform: Platform, slugs: list[str], *, actor: str) -> list[Rotated]:
    """Rotate each of ``slugs`` in turn; one store's failure is recorded, not raised."""
    done = []
    for slug in slugs:
        try:
            done.append(rotate_store(platform, slug, actor=actor))
        except TenantryError as exc:
            done.append(Rotated(slug, None, None, error=str(exc)))
    return done


def rotate_due(platform: Platform) -> list[Rotated]:
    """What the scheduler runs: rotate every store whose credentials are older than
    ``TENANTRY_CREDENTIAL_ROTATION_DAYS`` (0: never)."""
    days = platform.settings.credential_rotation_days
    if days <= 0:
        return []
    return rotate_many(
        platform, due_stores(platform, older_than=timedelta(days=days)), actor=audit.SCHEDULER
    )


def parse_age(text: str) -> timedelta:
    """``90d``, ``12h`` or ``30m`` as a duration; :class:`InvalidInput` otherwise."""
    units = {"d": "days", "h": "hours", "m": "minutes"}
    number, unit = text[:-1], text[-1:].lower()
    if unit not in units or not number.isdigit() or int(number) > 100_000:
        raise InvalidInput(
            f"--older-than {text[:20]!r} is not a duration.",
            "Write a whole number with d (days), h (hours) or m (minutes), e.g. 90d.",
        )
    return timedelta(**{units[unit]: int(number)})
