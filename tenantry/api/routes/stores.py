"""Stores and their provisioning jobs."""

from __future__ import annotations

from fastapi import APIRouter, Query, Response, status
from sqlalchemy.orm import Session

from tenantry.api.audit_failures import audit_failures
from tenantry.api.deps import (
    AdminDep,
    DispatcherDep,
    KeyDep,
    MasterDep,
    MasterReadDep,
    PlatformDep,
    is_admin,
    visible_store,
)
from tenantry.api.fields import Offset
from tenantry.api.schemas import (
    JobAccepted,
    JobOut,
    ProvisionRequest,
    SharedProvisionRequest,
    StoreCreate,
    StoreList,
    StoreOut,
    StoreUpdate,
    UsageOut,
)
from tenantry.db.master.models import ProvisioningJob, ProvisioningMode, Store
from tenantry.errors import NotFound
from tenantry.operations import provision_request, provision_shared, store_create
from tenantry.services import provisioning, stores, usage
from tenantry.services.stores import LifecycleStatus

router = APIRouter(tags=["stores"])


def store_out(session: Session, store: Store, status: str | None = None) -> StoreOut:
    """The API view of a store (``status``: its :func:`~stores.lifecycle_status`, when the
    caller already has it)."""
    return StoreOut(
        id=store.id,
        slug=store.slug,
        name=store.name,
        status=status or stores.lifecycle_status(session, store),
        database_status=store.database_status,
        database_type=store.database_type,
        plan=store.subscription_plan,
        subscription_status=store.subscription_status,
        product_count=store.product_count,
        order_count=store.order_count,
        api_calls_month=store.api_calls_month,
        is_published=store.is_published,
        created_at=store.created_at,
        updated_at=store.updated_at,
        billing_customer_id=store.billing_customer_id,
        residency_region=store.residency_region,
        residency_tier=store.residency_tier,
    )


def job_out(job: ProvisioningJob) -> JobOut:
    """The API view of a job (never its target's secret)."""
    return JobOut(
        id=job.id,
        store_id=job.store_id,
        mode=job.mode,
        status=job.public_status,
        step=job.step,
        progress=job.progress,
        message=job.message,
        tables_created=job.tables_created,
        total_tables=job.total_tables or 0,
        error=job.error,
        attempts=job.attempts,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


@router.post("/stores", status_code=status.HTTP_201_CREATED, response_model=StoreOut)
def create_store(
    body: StoreCreate, master: MasterReadDep, key: AdminDep, platform: PlatformDep
) -> StoreOut:
    """Register a store (admin keys only). Provision it next."""
    with audit_failures(master, platform, key, "store.create", "store", body.slug):
        created = store_create.create(
            platform,
            slug=body.slug,
            name=body.name,
            plan=body.plan,
            region=body.region,
            tier=body.tier,
            actor=key.actor,
        )
    store = stores.get_store(master, created.id)
    return store_out(master, store)


@router.get("/stores", response_model=StoreList)
def list_stores(
    master: MasterDep,
    key: KeyDep,
    limit: int = Query(100, ge=1, le=1000),
    offset: Offset = 0,
    status: LifecycleStatus | None = Query(
        None, description="Only the stores in this status (as each item's `status`)."
    ),
) -> StoreList:
    """Stores the key may see, in slug order: all for an admin key, its own for a store key;
    with ``status``, only those in it (``total`` counts them)."""
    if is_admin(key):
        found, total = stores.list_stores(master, status=status, limit=limit, offset=offset)
        statuses = stores.lifecycle_statuses(master, found)
    else:
        own = [stores.get_store(master, key.store_id)] if key.store_id else []
        statuses = stores.lifecycle_statuses(master, own)
        matching = [s for s in own if status is None or statuses[s.id] == status]
        found, total = matching[offset : offset + limit], len(matching)
    return StoreList(items=[store_out(master, s, statuses[s.id]) for s in found], total=total)


@router.get("/stores/{store_ref}", response_model=StoreOut)
def show_store(store_ref: str, master: MasterDep, key: KeyDep) -> StoreOut:
    """One store, by id or slug."""
    return store_out(master, visible_store(master, key, store_ref))


@router.get("/stores/{store_ref}/usage", response_model=UsageOut)
def store_usage(
    store_ref: str,
    master: MasterDep,
    key: KeyDep,
    days: int = Query(
        30, ge=1, le=usage.MAX_DAYS, description="The last this many UTC days, today included."
    ),
) -> UsageOut:
    """A store's daily usage (products, orders, storage, API calls), oldest day first, and
    its last measured storage against its plan's limit. Days are written by the worker's
    usage rollup (hourly for today, once after midnight UTC for yesterday)."""
    store = visible_store(master, key, store_ref)
    return UsageOut.model_validate(usage.store_usage(master, store, days).document())


@router.patch("/stores/{store_ref}", response_model=StoreOut)
def update_store(store_ref: str, body: StoreUpdate, master: MasterDep, key: AdminDep) -> StoreOut:
    """Rename a store, change its plan or publish it."""
    store = visible_store(master, key, store_ref)
    stores.update_store(
        master,
        store,
        name=body.name,
        plan=body.plan,
        is_published=body.is_published,
        actor=key.actor,
    )
    master.commit()
    return store_out(master, store)


@router.post("/stores/{store_ref}/suspend", response_model=StoreOut)
def suspend_store(
    store_ref: str, master: MasterDep, key: AdminDep, platform: PlatformDep
) -> StoreOut:
    """Refuse the store's traffic until it is resumed."""
    with audit_failures(master, platform, key, "store.suspend", "store", store_ref):
        store = visible_store(master, key, store_ref)
        stores.suspend_store(master, store, actor=key.actor)
        master.commit()
    platform.router.evict(store.id)
    return store_out(master, store)


@router.post("/stores/{store_ref}/resume", response_model=StoreOut)
def resume_store(
    store_ref: str, master: MasterDep, key: AdminDep, platform: PlatformDep
) -> StoreOut:
    """Serve a suspended store again."""
    with audit_failures(master, platform, key, "store.resume", "store", store_ref):
        store = visible_store(master, key, store_ref)
        stores.resume_store(master, store, actor=key.actor)
        master.commit()
    return store_out(master, store)


@router.post(
    "/stores/{store_ref}/provision",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobAccepted,
)
def provision_store(
    store_ref: str,
    body: ProvisionRequest,
    master: MasterReadDep,
    key: AdminDep,
    platform: PlatformDep,
    dispatcher: DispatcherDep,
    response: Response,
) -> JobAccepted:
    """Start provisioning the store's database in the background; poll the job."""
    store_id = visible_store(master, key, store_ref).id
    actor = key.actor
    # The check is done: end its read transaction, since the job is recorded in one of its
    # own. Nothing loaded from it is read after this.
    master.rollback()
    job = provision_request.request(
        platform,
        dispatcher,
        store_id,
        mode=ProvisioningMode(body.mode),
        server=body.server,
        url=body.url,
        actor=actor,
    )
    url = f"/provision/{job.job_id}"
    response.headers["Location"] = url
    return JobAccepted(job_id=job.job_id, status=job.status, status_url=url)


@router.post(
    "/stores/{store_ref}/provision/shared",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobAccepted,
)
def provision_store_shared(
    store_ref: str,
    body: SharedProvisionRequest,
    master: MasterReadDep,
    key: AdminDep,
    platform: PlatformDep,
    dispatcher: DispatcherDep,
    response: Response,
) -> JobAccepted:
    """Start giving the store its own schema in a shared PostgreSQL database (schema per
    tenant) in the background; poll the job. 422 for a MariaDB or SQLite server, 409 for a
    store provisioned already or with a job under way."""
    with audit_failures(master, platform, key, "store.provision", "store", store_ref):
        store_id = visible_store(master, key, store_ref).id
        master.rollback()  # end the check's transaction: the job is recorded in its own
        job = provision_shared.request_shared(
            platform, dispatcher, store_id, body.target, actor=key.actor
        )
    url = f"/provision/{job.job_id}"
    response.headers["Location"] = url
    return JobAccepted(job_id=job.job_id, status=job.status, status_url=url)


@router.get("/provision/{job_id}", response_model=JobOut)
def show_job(job_id: str, master: MasterDep, key: KeyDep) -> JobOut:
    """A provisioning job: status, step, progress, tables created of total, message, error."""
    job = provisioning.get_job(master, job_id)
    if not is_admin(key) and key.store_id != job.store_id:
        raise NotFound(f"no provisioning job {job_id!r}.")
    return job_out(job)
