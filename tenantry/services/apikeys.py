"""API keys: shown once, stored as a hash, scoped to the platform, one store or one app."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from tenantry.db.master.models import ApiKey, Store
from tenantry.db.types import utcnow
from tenantry.errors import InvalidInput, NotFound, Unauthorized
from tenantry.services import audit
from tenantry.services.billing import validation
from tenantry.services.permissions import Principal

KEY_PREFIX = "tnt"
#: A key's last use is written at most this often.
LAST_USE_EVERY = timedelta(minutes=1)


class Scope(StrEnum):
    """What a key may reach."""

    ADMIN = "admin"  # the whole platform
    STORE = "store"  # one store's data
    APP = "app"  # one app's billing data


#: Marks a key that reads what its scope reaches and changes nothing (kept with its scopes).
READ_ONLY = "read_only"


def _hash(secret: str) -> str:
    # Keys carry 256 random bits, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class NewKey:
    """A key as created: ``plaintext`` is shown once and never stored."""

    key: ApiKey
    plaintext: str


def create_key(
    session: Session,
    *,
    name: str,
    scope: Scope,
    store: Store | None = None,
    app_id: str | None = None,
    read_only: bool = False,
    actor: str,
) -> NewKey:
    """Create a key; ``store`` for a store key, ``app_id`` for an app key; a ``read_only``
    key reads what its scope reaches and changes nothing."""
    if (scope is Scope.STORE) != (store is not None) or (scope is Scope.APP) != bool(app_id):
        raise InvalidInput("a store key needs a store, an app key an app id, an admin key neither.")
    if app_id is not None:
        # The same rule billing applies: a key for an app id billing refuses reaches nothing.
        validation.app_id(app_id)
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    key = ApiKey(
        name=name[:255] or scope.value,
        prefix=prefix,
        key_hash=_hash(secret),
        scopes=[scope.value, READ_ONLY] if read_only else [scope.value],
        store_id=store.id if store else None,
        app_id=app_id,
    )
    session.add(key)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="apikey.create",
        target_type="api_key",
        target_id=prefix,
        store_id=key.store_id,
        details={"scope": scope.value, "app_id": app_id, "read_only": read_only},
    )
    return NewKey(key, f"{KEY_PREFIX}_{prefix}_{secret}")


def is_read_only(key: ApiKey) -> bool:
    """Whether the key may only read."""
    return READ_ONLY in key.scopes


def principal_of(key: ApiKey) -> Principal:
    """The principal a request authenticated with ``key`` acts as."""
    scope = next((s for s in key.scopes if s != READ_ONLY), "")
    return Principal(
        kind="key",
        name=key.prefix,
        role=scope,
        read_only=is_read_only(key),
        scopes=tuple(key.scopes),
        store_id=key.store_id,
        app_id=key.app_id,
        id=key.id,
    )


def prefix_of(presented: str) -> str | None:
    """The prefix of a presented key (what the audit log may name), if it has one."""
    parts = presented.strip().split("_", 2)
    if len(parts) == 3 and parts[0] == KEY_PREFIX and 0 < len(parts[1]) <= 16:
        return parts[1]
    return None


def authenticate(session: Session, presented: str) -> ApiKey:
    """The key ``presented`` stands for, or :class:`Unauthorized`. Records its last use."""
    parts = presented.strip().split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX:
        raise Unauthorized("malformed API key.", "Send 'Authorization: Bearer tnt_…'.")
    key = session.scalar(select(ApiKey).where(ApiKey.prefix == parts[1]))
    now = utcnow()
    if key is None or not hmac.compare_digest(key.key_hash, _hash(parts[2])):
        raise Unauthorized("unknown API key.")
    if key.revoked_at is not None or (key.expires_at is not None and key.expires_at <= now):
        raise Unauthorized("this API key was revoked or has expired.")
    return key


def record_use(session: Session, key: ApiKey) -> bool:
    """Set the key's ``last_used_at``, at most once a minute (a request should not mean a
    write); whether it was due. One UPDATE, nothing read first, so it never has to upgrade a
    read transaction (which SQLite refuses while another connection writes)."""
    now = utcnow()
    if key.last_used_at is not None and (now - key.last_used_at) <= LAST_USE_EVERY:
        return False
    session.execute(
        update(ApiKey)
        .where(
            ApiKey.id == key.id,
            or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < now - LAST_USE_EVERY),
        )
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )
    set_committed_value(key, "last_used_at", now)  # already written: not a change to flush
    return True


def list_keys(session: Session) -> list[tuple[ApiKey, str | None]]:
    """Every key (never its secret) with the slug of its store, oldest first."""
    rows = session.execute(
        select(ApiKey, Store.slug)
        .outerjoin(Store, Store.id == ApiKey.store_id)
        .order_by(ApiKey.created_at)
    )
    return [(key, slug) for key, slug in rows]


def has_admin_key(session: Session) -> bool:
    """Whether a usable (not revoked, not expired) admin key exists."""
    now = utcnow()
    for key in session.scalars(select(ApiKey).where(ApiKey.revoked_at.is_(None))):
        if Scope.ADMIN.value in key.scopes and (key.expires_at is None or key.expires_at > now):
            return True
    return False


def revoke_key(session: Session, prefix: str, *, actor: str) -> ApiKey:
    """Revoke the key with ``prefix``; revoking a revoked key changes nothing."""
    key = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if key is None:
        raise NotFound(
            f"no API key with prefix {prefix!r}.", "List the keys with `tenantry apikeys list`."
        )
    if key.revoked_at is not None:
        return key
    key.revoked_at = utcnow()
    audit.record(
        session,
        actor=actor,
        action="apikey.revoke",
        target_type="api_key",
        target_id=prefix,
        store_id=key.store_id,
    )
    return key
