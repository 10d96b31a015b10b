"""Moving a store's database to another server (seed 004, scenario 3): the master-side steps,
on a session the caller gives (and commits): :mod:`tenantry.operations.move_store` runs a move.

1. **Check**, changing nothing (:mod:`~tenantry.services.move_plan`).
2. **Start** (:func:`start_move`): a ``store_moves`` row (a ``move`` operation, held by the
   mover from the start), and the store's writes blocked (the API answers 503 with
   Retry-After; reads are served from the source). The block ends when the move's lease does:
   a mover that dies stops renewing both.
3. **Copy** and 4. **verify** (:mod:`tenantry.operations.move_copy`), 5. the source made
   read-only where the backend allows it.
6. **Switch** (:func:`switch_store`): the old connection deactivated, the new one saved,
   ``connection_version`` bumped (every router reopens), the write block lifted, the store's
   counters recomputed from the moved database.

Any failure (or a cancel) before the switch rolls back (:func:`release_rolled_back`): the
source writable again, the target dropped if the move created it, the block lifted, the store
still served from the source.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from tenantry.crypto import SecretBox
from tenantry.db.master.models import (
    AccessMode,
    DatabaseStatus,
    IntegrationConfig,
    Store,
    StoreMove,
)
from tenantry.db.shared_schemas import pool_login
from tenantry.db.types import utcnow
from tenantry.db.urls import redact
from tenantry.errors import Conflict, NotFound, TenantryError
from tenantry.services import audit
from tenantry.services.connections import split_url
from tenantry.services.counters import StoreCounters, apply_counters
from tenantry.services.move_plan import MovePlan, refuse_busy
from tenantry.services.runtime_access import RuntimeAccess, save_access


class LostMove(TenantryError):
    """The move's lease or write block was taken over (it lapsed): the mover must stop."""


def start_move(session: Session, plan: MovePlan, move: StoreMove) -> StoreMove | None:
    """Record ``move`` and block the store's writes with the move's reason, after checking
    the store did not change since ``plan``; the store's running move whose mover died (its
    block lapsed), to be taken over, if any."""
    store = session.get(Store, plan.store_id, with_for_update=True)
    if store is None:
        raise NotFound(f"store {plan.slug!r} was deleted; nothing was changed.")
    if (
        store.connection_version != plan.connection_version
        or store.database_status != DatabaseStatus.ACTIVE
    ):
        raise Conflict(
            f"store {plan.slug!r} changed while the move was being prepared; nothing was changed.",
            "Run the move again.",
        )
    abandoned = refuse_busy(session, store)
    session.add(move)
    store.write_block_reason = plan.reason
    store.write_block_until = move.lease_expires_at
    return abandoned


def switch_store(
    session: Session,
    box: SecretBox,
    plan: MovePlan,
    details: dict[str, Any],
    *,
    keep_until: datetime,
    actor: str,
    runtime: RuntimeAccess | None = None,
    pool_password: str | None = None,
) -> IntegrationConfig:
    """Point the store at the moved database (in the caller's transaction): the new
    connection saved, the old one deactivated, routers told to reopen, the block lifted, the
    counters taken from the verified copy; the new connection (the store's ``runtime`` login
    on the target, when it has one; into a shared database, its schema through the database's
    pool login, whose password is ``pool_password``). A store whose connection or status
    changed during the move is a :class:`Conflict` (nothing switched)."""
    store = session.get(Store, plan.store_id, with_for_update=True)
    old = session.get(IntegrationConfig, plan.from_config_id)
    if store is None:
        raise LostMove("the store was deleted during the move.")
    if (
        old is None
        or not old.is_active
        or store.connection_version != plan.connection_version
        or store.database_status != DatabaseStatus.ACTIVE
    ):
        raise Conflict(
            f"store {plan.slug!r}'s connection or status changed during the move.",
            "Nothing was switched; run the move again.",
        )
    new = _new_connection(box, plan, old, pool_password)
    if runtime is not None:
        save_access(new, runtime)
    config_data = new.config_data
    old.is_active = False
    session.add(new)
    session.flush()
    store.database_type = config_data["engine"]
    store.database_host = config_data.get("host")
    store.database_name = config_data.get("database")
    store.schema_revision = plan.revision
    store.connection_version += 1  # every router drops its engine on the source
    store.write_block_reason = None
    store.write_block_until = None
    verified = {name: t.get("verified", 0) for name, t in details["tables"].items()}
    apply_counters(session, store.id, StoreCounters.from_row_counts(verified))
    audit.record(
        session,
        actor=actor,
        action="store.move",
        target_type="store",
        target_id=plan.slug,
        store_id=plan.store_id,
        details={
            "move_id": str(plan.move_id),
            "from": details["source"],
            "to": details["target"],
            "rows": details["total_rows"],
            "keep_source_until": keep_until.isoformat(),
        },
    )
    return new


def _new_connection(
    box: SecretBox, plan: MovePlan, old: IntegrationConfig, pool_password: str | None
) -> IntegrationConfig:
    """The store's connection to the moved database (not yet added to the session)."""
    shared = plan.shared
    if shared is None:
        config_data, secret = split_url(box, plan.target_url)
    else:
        if pool_password is None:
            raise LostMove("the shared database's pool login password was lost during the move.")
        pool_url = shared.admin.set(
            database=shared.database,
            username=pool_login(shared.database),
            password=pool_password,
        )
        config_data, secret = split_url(box, pool_url)
        config_data["role"] = shared.role
    new = IntegrationConfig(
        store_id=plan.store_id,
        integration_type=config_data["engine"],
        config_data=config_data,
        secret_encrypted=secret,
        database_server_id=plan.server_id,
        created_by_tenantry=True,
        instance_id=old.instance_id,
        is_active=True,
    )
    if shared is not None:  # as shared provisioning saves it
        new.db_schema = shared.schema
        new.access_mode = AccessMode.RUNTIME_LOGIN
        new.can_ddl = False
        new.credentials_rotated_at = utcnow()
    return new


def release_rolled_back(
    session: Session,
    move: StoreMove,
    *,
    reason: str,
    message: str,
    failed_at: str | None,
    actor: str,
) -> None:
    """Lift the write block ``reason`` of a move rolled back (the store stays on its source)
    and audit it, in the caller's transaction."""
    store = session.get(Store, move.store_id) if move.store_id else None
    if store is not None and store.write_block_reason == reason:
        store.write_block_reason = None
        store.write_block_until = None
    audit.record(
        session,
        actor=actor,
        action="store.move.rolled_back",
        target_type="store",
        target_id=move.slug,
        store_id=move.store_id,
        details={
            "move_id": str(move.id),
            "to_server": move.to_server,
            "failed_at": failed_at,
            "error": message,
            "target_dropped": bool((move.details or {}).get("target_dropped")),
        },
    )


def describe(exc: BaseException) -> str:
    """One line about ``exc``, without the passwords of either database."""
    if isinstance(exc, TenantryError):
        message = exc.message + (f" {exc.hint}" if exc.hint else "")
    elif isinstance(exc, KeyboardInterrupt):
        message = "interrupted"
    else:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        message = f"{type(exc).__name__}: {first}"
    return redact(message)


def load_move(session: Session, move_id: uuid.UUID) -> StoreMove:
    """The move ``move_id``, detached from ``session``."""
    move = session.get_one(StoreMove, move_id)
    session.expunge(move)
    return move
