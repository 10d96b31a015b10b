"""The billing API, under /billing: an app key sees and changes only its app's records.

An app-scoped key acts for its app; a platform admin key names the app in ``X-App-Id``.
Every POST honours an ``Idempotency-Key`` (see ``tenantry.api.idempotency``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response, status
from sqlalchemy.orm import Session

from tenantry.api import idempotency
from tenantry.api.billing_audit import audited, succeeded
from tenantry.api.billing_schemas import (
    CustomerCreate,
    CustomerList,
    CustomerOut,
    CustomerUpdate,
    EventOut,
    InvoiceCreate,
    InvoiceOut,
    InvoiceStatusChange,
    MilestoneOut,
    PlanCreate,
    PlanOut,
    SubscriptionCancel,
    SubscriptionCreate,
    SubscriptionOut,
    SubscriptionTransition,
)
from tenantry.api.deps import READ_METHODS, KeyDep, PlatformDep, is_admin
from tenantry.api.fields import APP_ID_PATTERN, EXTERNAL_ID_PATTERN, Offset
from tenantry.api.openapi import raises
from tenantry.db.billing.models import (
    BillingCustomer,
    BillingInvoice,
    InvoiceStatus,
    SubscriptionStatus,
    WebhookStatus,
)
from tenantry.errors import Forbidden
from tenantry.services.apikeys import Scope
from tenantry.services.billing import customers, invoices, plans, subscriptions, validation
from tenantry.services.billing import webhooks as events

router = APIRouter(prefix="/billing", tags=["billing"])


@raises(403, 422)
def billing_app(
    key: KeyDep,
    x_app_id: Annotated[
        str | None,
        Header(pattern=APP_ID_PATTERN, description="The app an admin key acts for."),
    ] = None,
) -> str:
    """The app a request acts for: an app key's own (naming another in X-App-Id is refused,
    not ignored), or the one an admin key names."""
    if Scope.APP.value in key.scopes and key.app_id:
        if x_app_id is not None and x_app_id != key.app_id:
            raise Forbidden(
                f"this key acts for app {key.app_id!r}; it cannot act for {x_app_id!r}.",
                f"Use a key of app {x_app_id!r}, or drop the X-App-Id header.",
            )
        return key.app_id
    if is_admin(key) and x_app_id:
        return validation.app_id(x_app_id)
    raise Forbidden(
        "the billing API needs an app key (or an admin key with X-App-Id).",
        "Create one with `tenantry apikeys create --app APP_ID`.",
    )


@raises(503)
def billing_session(request: Request, platform: PlatformDep) -> Iterator[Session]:
    """A billing session; routes commit what they change with :func:`idempotency.commit`
    (writer sessions for requests that may write, as for master)."""
    sessions = (
        platform.billing_sessions
        if request.method in READ_METHODS
        else platform.billing_writer_sessions
    )
    with sessions() as session:
        idempotency.bind(request, session)
        yield session


App = Annotated[str, Depends(billing_app)]
Billing = Annotated[Session, Depends(billing_session)]


def _customer_out(c: BillingCustomer) -> CustomerOut:
    return CustomerOut(
        id=c.id,
        app_id=c.app_id,
        external_customer_id=c.external_customer_id,
        email=c.email,
        name=c.name,
        metadata=c.metadata_,
        erased_at=c.erased_at,
        created_at=c.created_at,
        updated_at=c.updated_at,
    )


def _invoice_out(i: BillingInvoice) -> InvoiceOut:
    return InvoiceOut(
        id=i.id,
        customer_id=i.customer_id,
        invoice_number=i.invoice_number,
        description=i.description,
        amount_minor=i.amount_minor,
        amount_paid_minor=i.amount_paid_minor,
        currency=i.currency,
        status=i.status,
        due_at=i.due_at,
        paid_at=i.paid_at,
        metadata=i.metadata_,
        milestones=[MilestoneOut.model_validate(m, from_attributes=True) for m in i.milestones],
    )


# --------------------------------------------------------------------------- customers


@router.post(
    "/customers",
    response_model=CustomerOut,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": CustomerOut, "description": "The customer existed already."}},
)
def create_customer(
    request: Request, body: CustomerCreate, app: App, session: Billing, response: Response
) -> CustomerOut:
    """Create the app's customer; the same external id again returns the first (200)."""
    customer, created = customers.create_customer(
        session, app, body.email, body.name, body.external_customer_id, body.metadata
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return idempotency.commit(request, session, _customer_out(customer), response.status_code)


@router.get("/customers", response_model=CustomerList)
def list_customers(
    app: App,
    session: Billing,
    limit: int = Query(50, ge=1, le=500),
    offset: Offset = 0,
    email: str | None = None,
) -> CustomerList:
    """The app's customers, oldest first."""
    rows, total = customers.list_customers(session, app, limit=limit, offset=offset, email=email)
    return CustomerList(
        items=[_customer_out(c) for c in rows], total=total, limit=limit, offset=offset
    )


@router.get("/customers/by-external-id/{external_id}", response_model=CustomerOut)
def customer_by_external_id(
    external_id: Annotated[str, Path(pattern=EXTERNAL_ID_PATTERN)], app: App, session: Billing
) -> CustomerOut:
    """The app's customer by the app's own id."""
    return _customer_out(customers.get_by_external_id(session, app, external_id))


@router.get("/customers/{customer_id}", response_model=CustomerOut)
def get_customer(customer_id: uuid.UUID, app: App, session: Billing) -> CustomerOut:
    """One customer."""
    return _customer_out(customers.get_customer(session, app, customer_id))


@router.patch("/customers/{customer_id}", response_model=CustomerOut)
def update_customer(
    request: Request, customer_id: uuid.UUID, body: CustomerUpdate, app: App, session: Billing
) -> CustomerOut:
    """Change a customer's email, name or metadata."""
    customer = customers.update_customer(
        session,
        customers.get_customer(session, app, customer_id),
        email=body.email,
        name=body.name,
        metadata=body.metadata,
    )
    return idempotency.commit(request, session, _customer_out(customer))


@router.post("/customers/{customer_id}/erase", response_model=CustomerOut)
def erase_customer(
    request: Request, customer_id: uuid.UUID, app: App, session: Billing, key: KeyDep
) -> CustomerOut:
    """GDPR erasure: personal data removed, financial records kept, audit entry written."""
    customer = customers.erase_customer(
        session, customers.get_customer(session, app, customer_id), actor=key.actor
    )
    return idempotency.commit(request, session, _customer_out(customer))


# --------------------------------------------------------------------------- plans, subs


@router.post("/plans", response_model=PlanOut, status_code=status.HTTP_201_CREATED)
def create_plan(request: Request, body: PlanCreate, app: App, session: Billing) -> PlanOut:
    """Add a plan to the app."""
    plan = plans.create_plan(session, app, **body.model_dump())
    return idempotency.commit(request, session, PlanOut.model_validate(plan, from_attributes=True))


@router.get("/plans", response_model=list[PlanOut])
def list_plans(app: App, session: Billing) -> list[PlanOut]:
    """The app's plans."""
    return [PlanOut.model_validate(p, from_attributes=True) for p in plans.list_plans(session, app)]


@router.post("/subscriptions", response_model=SubscriptionOut, status_code=status.HTTP_201_CREATED)
def create_subscription(
    request: Request,
    body: SubscriptionCreate,
    app: App,
    session: Billing,
    key: KeyDep,
    platform: PlatformDep,
) -> SubscriptionOut:
    """Subscribe a customer to one of the app's plans (audited)."""
    with audited(platform, session, app, key, "subscription.create", "subscription") as entry:
        entry.details = {"customer_id": str(body.customer_id), "plan": body.plan_code}
        sub = subscriptions.create_subscription(
            session,
            customers.get_customer(session, app, body.customer_id),
            plans.get_plan(session, app, body.plan_code),
            quantity=body.quantity,
            trial_days=body.trial_days,
        )
        entry.target_id = str(sub.id)
        succeeded(session, app, entry, status=sub.status)
    return idempotency.commit(
        request, session, SubscriptionOut.model_validate(sub, from_attributes=True)
    )


@router.get("/subscriptions", response_model=list[SubscriptionOut])
def list_subscriptions(
    app: App,
    session: Billing,
    customer_id: uuid.UUID | None = None,
    status_: SubscriptionStatus | None = Query(None, alias="status"),
    limit: int = Query(50, ge=1, le=500),
    offset: Offset = 0,
) -> list[SubscriptionOut]:
    """The app's subscriptions, newest first."""
    return [
        SubscriptionOut.model_validate(s, from_attributes=True)
        for s in subscriptions.list_subscriptions(
            session,
            app,
            customer_id=customer_id,
            status=status_.value if status_ else None,
            limit=limit,
            offset=offset,
        )
    ]


@router.get("/subscriptions/{sub_id}", response_model=SubscriptionOut)
def get_subscription(sub_id: uuid.UUID, app: App, session: Billing) -> SubscriptionOut:
    """One subscription."""
    return SubscriptionOut.model_validate(
        subscriptions.get_subscription(session, app, sub_id), from_attributes=True
    )


@router.post("/subscriptions/{sub_id}/transition", response_model=SubscriptionOut)
def transition_subscription(
    request: Request,
    sub_id: uuid.UUID,
    body: SubscriptionTransition,
    app: App,
    session: Billing,
    key: KeyDep,
    platform: PlatformDep,
) -> SubscriptionOut:
    """Move a subscription along the lifecycle (invalid moves are a 409; audited)."""
    action = "subscription.transition"
    with audited(platform, session, app, key, action, "subscription", str(sub_id)) as entry:
        sub = subscriptions.get_subscription(session, app, sub_id)
        entry.details = {"from": sub.status, "to": body.status}
        subscriptions.transition(sub, body.status)
        succeeded(session, app, entry)
    return idempotency.commit(
        request, session, SubscriptionOut.model_validate(sub, from_attributes=True)
    )


@router.post("/subscriptions/{sub_id}/cancel", response_model=SubscriptionOut)
def cancel_subscription(
    request: Request,
    sub_id: uuid.UUID,
    body: SubscriptionCancel,
    app: App,
    session: Billing,
    key: KeyDep,
    platform: PlatformDep,
) -> SubscriptionOut:
    """Cancel now, or at the end of the current period (audited)."""
    action = "subscription.cancel"
    with audited(platform, session, app, key, action, "subscription", str(sub_id)) as entry:
        entry.details = {"at_period_end": body.at_period_end}
        sub = subscriptions.cancel(
            subscriptions.get_subscription(session, app, sub_id), at_period_end=body.at_period_end
        )
        succeeded(session, app, entry, status=sub.status)
    return idempotency.commit(
        request, session, SubscriptionOut.model_validate(sub, from_attributes=True)
    )


# --------------------------------------------------------------------------- invoices


@router.post("/invoices", response_model=InvoiceOut, status_code=status.HTTP_201_CREATED)
def create_invoice(
    request: Request,
    body: InvoiceCreate,
    app: App,
    session: Billing,
    key: KeyDep,
    platform: PlatformDep,
) -> InvoiceOut:
    """Issue an invoice (draft, or open with ``finalize``), optionally in milestones (audited)."""
    with audited(platform, session, app, key, "invoice.create", "invoice") as entry:
        entry.details = {"customer_id": str(body.customer_id), "amount_minor": body.amount_minor}
        invoice = invoices.create_invoice(
            session,
            customers.get_customer(session, app, body.customer_id),
            invoice_number=body.invoice_number,
            currency=body.currency,
            amount_minor=body.amount_minor,
            description=body.description,
            due_at=body.due_at,
            metadata=body.metadata,
            finalize=body.finalize,
            milestones=[
                invoices.MilestoneInput(m.name, m.amount_minor, m.description, m.due_at)
                for m in body.milestones
            ],
        )
        entry.target_id = str(invoice.id)
        succeeded(session, app, entry, status=invoice.status)
    return idempotency.commit(request, session, _invoice_out(invoice))


@router.get("/invoices", response_model=list[InvoiceOut])
def list_invoices(
    app: App,
    session: Billing,
    status_: InvoiceStatus | None = Query(None, alias="status"),
    customer_id: uuid.UUID | None = None,
    limit: int = Query(50, ge=1, le=500),
    offset: Offset = 0,
) -> list[InvoiceOut]:
    """The app's invoices, newest first."""
    return [
        _invoice_out(i)
        for i in invoices.list_invoices(
            session,
            app,
            status=status_.value if status_ else None,
            customer_id=customer_id,
            limit=limit,
            offset=offset,
        )
    ]


@router.get("/invoices/{invoice_id}", response_model=InvoiceOut)
def get_invoice(invoice_id: uuid.UUID, app: App, session: Billing) -> InvoiceOut:
    """One invoice with its milestones."""
    return _invoice_out(invoices.get_invoice(session, app, invoice_id))


@router.post("/invoices/{invoice_id}/status", response_model=InvoiceOut)
def change_invoice_status(
    request: Request,
    invoice_id: uuid.UUID,
    body: InvoiceStatusChange,
    app: App,
    session: Billing,
    key: KeyDep,
    platform: PlatformDep,
) -> InvoiceOut:
    """Finalize (open), void or mark uncollectible; a paid invoice never changes (audited)."""
    action = "invoice.status"
    with audited(platform, session, app, key, action, "invoice", str(invoice_id)) as entry:
        invoice = invoices.get_invoice(session, app, invoice_id)
        entry.details = {"from": invoice.status, "to": body.status}
        invoices.move(invoice, InvoiceStatus(body.status))
        succeeded(session, app, entry)
    return idempotency.commit(request, session, _invoice_out(invoice))


# --------------------------------------------------------------------------- events


@router.get("/events", response_model=list[EventOut])
def list_events(
    app: App,
    session: Billing,
    status_: WebhookStatus | None = Query(None, alias="status"),
    limit: int = Query(50, ge=1, le=500),
) -> list[EventOut]:
    """The app's webhook events, newest first."""
    return [
        EventOut.model_validate(e, from_attributes=True)
        for e in events.list_webhooks(
            session, app_id=app, status=status_.value if status_ else None, limit=limit
        )
    ]


@router.post("/events/{event_id}/replay", response_model=EventOut)
def replay_event(
    request: Request,
    event_id: Annotated[str, Path(max_length=255)],
    app: App,
    session: Billing,
    key: KeyDep,
) -> EventOut:
    """Apply an event again (its effects are idempotent)."""
    row = events.replay(session, events.get_webhook(session, event_id, app_id=app), actor=key.actor)
    return idempotency.commit(request, session, EventOut.model_validate(row, from_attributes=True))
