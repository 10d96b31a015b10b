"""Stores (tenants) in the master database: create, find, update, suspend, resume, delete."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import ColumnElement, Connection, and_, bindparam, exists, func, select
from sqlalchemy.orm import Session

from tenantry.db.master.models import (
    DatabaseStatus,
    IntegrationConfig,
    ProvisioningJob,
    ProvisioningStatus,
    Store,
    Subscription,
    SubscriptionStatus,
)
from tenantry.db.savepoints import insert_in_savepoint
from tenantry.db.types import utcnow
from tenantry.errors import Conflict, InvalidInput, NotFound
from tenantry.services import audit
from tenantry.services.plans import Plan, plan_named

# Lowercase letters, digits and inner hyphens, 3 to 63 characters: safe in a hostname, a
# file name and (with hyphens mapped to underscores) a SQL identifier.
SLUG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")


def validate_slug(slug: str) -> str:
    """Return ``slug`` if it is a valid store slug, else raise :class:`InvalidInput`."""
    if not isinstance(slug, str) or not SLUG_PATTERN.fullmatch(slug) or "--" in slug:
        raise InvalidInput(
            f"invalid store slug {slug!r}.",
            "Use 3 to 63 lowercase letters, digits and single hyphens, starting and ending "
            "with a letter or digit (e.g. my-shop).",
        )
    return slug


def validate_name(name: str) -> str:
    """A store name: 1 to 255 characters once trimmed."""
    name = (name or "").strip()
    if not name or len(name) > 255:
        raise InvalidInput("a store name must be 1 to 255 characters.")
    return name


def _audit(
    session: Session,
    store: Store,
    action: str,
    actor: str,
    details: dict[str, object] | None = None,
) -> None:
    audit.record(
        session,
        actor=actor,
        action=action,
        target_type="store",
        target_id=store.slug,
        store_id=store.id,
        details=details,
    )


def _apply_plan(sub: Subscription, plan: Plan) -> None:
    """Copy a plan's prices and limits onto a subscription (a custom deal edits them after)."""
    sub.plan_name = plan.name
    sub.price_monthly_minor = plan.price_monthly_minor
    sub.price_annual_minor = plan.price_annual_minor
    sub.max_products = plan.max_products
    sub.max_orders_per_month = plan.max_orders_per_month
    sub.max_storage_gb = plan.max_storage_gb
    sub.max_api_calls_per_month = plan.max_api_calls_per_month


def create_store(
    session: Session,
    *,
    slug: str,
    name: str,
    plan: str = "free",
    owner_id: uuid.UUID | None = None,
    residency_region: str | None = None,
    residency_tier: str | None = None,
    actor: str,
) -> Store:
    """Register a store (not yet provisioned) with a subscription to ``plan``.

    ``residency_region``/``residency_tier`` (checked labels) bind where its database may
    ever live: placement, moves and restores honour them.
    """
    validate_slug(slug)
    chosen = plan_named(plan)
    taken = Conflict(f"a store with slug {slug!r} exists already.", "Pick another slug.")
    if session.scalar(_ID_BY_SLUG, {"b_slug": slug}) is not None:
        raise taken
    now = utcnow()
    store = Store(
        slug=slug,
        name=validate_name(name),
        owner_id=owner_id,
        subscription_plan=chosen.name,
        subscription_status=SubscriptionStatus.ACTIVE,
        subscription_started_at=now,
        database_status=DatabaseStatus.PROVISIONING,
        residency_region=residency_region,
        residency_tier=residency_tier,
    )
    # On a server master two requests can both pass the check above; the slug's unique key
    # settles it, and the one refused is the same Conflict (not a 500).
    if insert_in_savepoint(session, store) is not None:
        raise taken
    subscription = Subscription(store_id=store.id, status=SubscriptionStatus.ACTIVE, started_at=now)
    _apply_plan(subscription, chosen)
    session.add(subscription)
    details: dict[str, object] = {"plan": chosen.name}
    if residency_region or residency_tier:
        details["residency"] = {"region": residency_region, "tier": residency_tier}
    _audit(session, store, "store.create", actor, details)
    return store


def get_store(session: Session, ref: str | uuid.UUID, *, lock: bool = False) -> Store:
    """The store with id or slug ``ref``.

    ``lock``: its row is locked until the transaction ends (``FOR NO KEY UPDATE`` on
    PostgreSQL, ``FOR UPDATE`` on MySQL; SQLite's writer transactions are serialised
    already), so requests that check and then change one store take turns. Make it the
    transaction's first read: MySQL's snapshot is taken at the first plain read, and one
    taken before the lock would not see what the turn before it committed.
    """
    store: Store | None = None
    by_id: uuid.UUID | None = ref if isinstance(ref, uuid.UUID) else None
    if by_id is None:
        try:
            by_id = uuid.UUID(str(ref))
        except ValueError:
            by_id = None
    if by_id is not None:
        locking = {"key_share": True} if lock else None
        store = session.get(Store, by_id, with_for_update=locking)
    else:
        store = session.scalar(_BY_SLUG_LOCKED if lock else _BY_SLUG, {"b_slug": ref})
    if store is None:
        raise NotFound(f"no store {str(ref)!r}.", "List the stores with `tenantry stores list`.")
    return store


class LifecycleStatus(StrEnum):
    """Where a store is (:func:`lifecycle_status`): the database status, except that a store
    still to be provisioned is ``provisioning`` while a job for it is queued or running and
    ``pending`` otherwise."""

    PENDING = "pending"
    PROVISIONING = "provisioning"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    FAILED = "failed"


def lifecycle_status_named(name: LifecycleStatus | str) -> LifecycleStatus:
    """The :class:`LifecycleStatus` called ``name``; :class:`InvalidInput` naming the
    statuses there are otherwise."""
    try:
        return LifecycleStatus(name)
    except ValueError:
        names = ", ".join(s.value for s in LifecycleStatus)
        raise InvalidInput(f"no store status {name!r}.", f"Use one of: {names}.") from None


def _in_lifecycle(status: LifecycleStatus) -> ColumnElement[bool]:
    """The stores in ``status``, as :func:`lifecycle_statuses` tells them apart, in SQL (so
    a filtered page and its total are of the matching stores, not of a page filtered after)."""
    if status not in (LifecycleStatus.PENDING, LifecycleStatus.PROVISIONING):
        return Store.database_status == DatabaseStatus(status.value)
    working = exists().where(
        ProvisioningJob.store_id == Store.id,
        ProvisioningJob.status.in_([ProvisioningStatus.QUEUED, ProvisioningStatus.RUNNING]),
    )
    waiting = Store.database_status == DatabaseStatus.PROVISIONING
    return and_(waiting, working if status == LifecycleStatus.PROVISIONING else ~working)


def list_stores(
    session: Session,
    *,
    status: LifecycleStatus | str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[Store], int]:
    """A page of stores ordered by slug (only those in lifecycle ``status`` when given; a
    name that is none is :class:`InvalidInput`), and how many there are in all."""
    if not 1 <= limit <= 1000 or offset < 0:
        raise InvalidInput("limit must be 1 to 1000 and offset at least 0.")
    query = select(Store)
    counter = select(func.count()).select_from(Store)
    if status is not None:
        wanted = _in_lifecycle(lifecycle_status_named(status))
        query = query.where(wanted)
        counter = counter.where(wanted)
    stores = list(session.scalars(query.order_by(Store.slug).limit(limit).offset(offset)))
    return stores, int(session.scalar(counter) or 0)


def current_subscription(session: Session, store: Store) -> Subscription | None:
    """The store's newest subscription."""
    return session.scalar(
        select(Subscription)
        .where(Subscription.store_id == store.id)
        .order_by(Subscription.started_at.desc())
        .limit(1)
    )


def update_store(
    session: Session,
    store: Store,
    *,
    name: str | None = None,
    plan: str | None = None,
    is_published: bool | None = None,
    actor: str,
) -> Store:
    """Change a store's name, plan or published flag (the slug never changes)."""
    changes: dict[str, object] = {}
    if name is not None:
        store.name = validate_name(name)
        changes["name"] = store.name
    if is_published is not None:
        store.is_published = is_published
        changes["is_published"] = is_published
    if plan is not None and plan != store.subscription_plan:
        chosen = plan_named(plan)
        store.subscription_plan = chosen.name
        sub = current_subscription(session, store)
        if sub is not None:
            _apply_plan(sub, chosen)
        changes["plan"] = chosen.name
    if changes:
        _audit(session, store, "store.update", actor, changes)
    return store


def suspend_store(session: Session, store: Store, *, reason: str = "", actor: str) -> Store:
    """Refuse all tenant traffic for ``store`` until it is resumed."""
    if store.database_status == DatabaseStatus.SUSPENDED:
        return store
    if store.database_status != DatabaseStatus.ACTIVE:
        raise Conflict(
            f"store {store.slug!r} is {store.database_status}; only an active store can be "
            "suspended."
        )
    store.database_status = DatabaseStatus.SUSPENDED
    store.suspended_at = utcnow()
    store.connection_version += 1  # every process drops its engine for the store
    _audit(session, store, "store.suspend", actor, {"reason": reason})
    return store


def resume_store(session: Session, store: Store, *, actor: str) -> Store:
    """Serve a suspended store again."""
    if store.database_status == DatabaseStatus.ACTIVE:
        return store
    if store.database_status != DatabaseStatus.SUSPENDED:
        raise Conflict(
            f"store {store.slug!r} is {store.database_status}; only a suspended store can be "
            "resumed."
        )
    store.database_status = DatabaseStatus.ACTIVE
    store.suspended_at = None
    _audit(session, store, "store.resume", actor)
    return store


# Asked on every provisioning request and run (and a store is found by its slug on most
# requests): built once, the store bound at each call.
_ID_BY_SLUG = select(Store.id).where(Store.slug == bindparam("b_slug"))
_BY_SLUG = select(Store).where(Store.slug == bindparam("b_slug"))
_BY_SLUG_LOCKED = _BY_SLUG.with_for_update(key_share=True)
_ACTIVE_CONNECTION = (
    select(IntegrationConfig)
    .where(
        IntegrationConfig.store_id == bindparam("b_store"),
        IntegrationConfig.is_active.is_(True),
    )
    .order_by(IntegrationConfig.created_at.desc())
    .limit(1)
)
_ACTIVE_CONNECTION_ID = _ACTIVE_CONNECTION.with_only_columns(IntegrationConfig.id)
_ACTIVE_JOB = select(ProvisioningJob).where(
    ProvisioningJob.store_id == bindparam("b_store"),
    ProvisioningJob.status.in_([ProvisioningStatus.QUEUED, ProvisioningStatus.RUNNING]),
)


def active_connection(session: Session, store: Store) -> IntegrationConfig | None:
    """The store's active database connection, if it has one."""
    return session.scalar(_ACTIVE_CONNECTION, {"b_store": store.id})


def active_connection_id(conn: Connection, store_id: uuid.UUID) -> uuid.UUID | None:
    """The id of the store ``store_id``'s active connection (as :func:`active_connection`),
    read on ``conn`` without loading it."""
    return conn.scalar(_ACTIVE_CONNECTION_ID, {"b_store": store_id})


def active_job(session: Session, store: Store) -> ProvisioningJob | None:
    """The store's queued or running provisioning job, if any."""
    return session.scalar(_ACTIVE_JOB, {"b_store": store.id})


@dataclass(frozen=True)
class DeletePlan:
    """What deleting a store will do to its database."""

    slug: str
    store_id: uuid.UUID
    connection: IntegrationConfig | None
    drop_database: bool


def plan_delete(session: Session, store: Store, *, drop_database: bool) -> DeletePlan:
    """Check a deletion: a database tenantry did not create is never dropped."""
    if active_job(session, store) is not None:
        raise Conflict(
            f"store {store.slug!r} has a provisioning job running.",
            "Wait for it or cancel it (tenantry jobs cancel ID) first.",
        )
    connection = active_connection(session, store)
    if drop_database and connection is not None and not connection.created_by_tenantry:
        raise Conflict(
            f"store {store.slug!r} uses a database tenantry did not create; tenantry never "
            "drops it.",
            "Delete the store without --drop-database; the database is left as it is.",
        )
    return DeletePlan(store.slug, store.id, connection, drop_database and connection is not None)


def delete_store(session: Session, store: Store, plan: DeletePlan, *, actor: str) -> None:
    """Remove the store and what master holds for it; its audit entries stay."""
    details: dict[str, object] = {"database_dropped": plan.drop_database}
    if plan.connection is not None:
        details["database"] = {
            k: v for k, v in plan.connection.config_data.items() if k != "password"
        }
    _audit(session, store, "store.delete", actor, details)
    session.delete(store)


def lifecycle_status(session: Session, store: Store) -> str:
    """One word for where the store is: pending (never provisioned), provisioning, active,
    suspended or failed."""
    return lifecycle_statuses(session, [store])[store.id]


def lifecycle_statuses(session: Session, found: Sequence[Store]) -> dict[uuid.UUID, str]:
    """:func:`lifecycle_status` of each store in ``found``, by id, in one query of the jobs
    (whatever the number of stores, as a page of a list needs)."""
    waiting = {s.id for s in found if s.database_status == DatabaseStatus.PROVISIONING}
    with_job = (
        set(
            session.scalars(
                select(ProvisioningJob.store_id).where(
                    ProvisioningJob.store_id.in_(list(waiting)),
                    ProvisioningJob.status.in_(
                        [ProvisioningStatus.QUEUED, ProvisioningStatus.RUNNING]
                    ),
                )
            )
        )
        if waiting
        else set()
    )
    return {
        s.id: "pending" if s.id in waiting and s.id not in with_job else str(s.database_status)
        for s in found
    }
