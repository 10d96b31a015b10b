"""Request and response bodies of the billing API (money in minor units, ISO currencies)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from tenantry.api.fields import (
    EMAIL_PATTERN,
    EXTERNAL_ID_PATTERN,
    PLAN_CODE_PATTERN,
    TEXT_MAX,
    Amount,
    Currency,
    Metadata,
    Quantity,
    RequestModel,
    StrictBool,
    StringMetadata,
    TrialDays,
)


class CustomerCreate(RequestModel):
    """A customer of the calling app, linked by the app's own id."""

    external_customer_id: str = Field(pattern=EXTERNAL_ID_PATTERN, max_length=255)
    email: str | None = Field(None, pattern=EMAIL_PATTERN, max_length=255)
    name: str | None = Field(None, max_length=255)
    metadata: Metadata = Field(default_factory=dict)


class CustomerUpdate(RequestModel):
    """Changes to a customer."""

    email: str | None = Field(None, pattern=EMAIL_PATTERN, max_length=255)
    name: str | None = Field(None, max_length=255)
    metadata: Metadata | None = None


class CustomerOut(BaseModel):
    """A billing customer."""

    id: uuid.UUID
    app_id: str
    external_customer_id: str
    email: str | None
    name: str | None
    metadata: dict[str, Any]
    erased_at: datetime | None
    created_at: datetime
    updated_at: datetime


class CustomerList(BaseModel):
    """A page of customers."""

    items: list[CustomerOut]
    total: int
    limit: int
    offset: int


class PlanCreate(RequestModel):
    """A plan of the calling app."""

    code: str = Field(pattern=PLAN_CODE_PATTERN, max_length=64)
    name: str = Field(min_length=1, max_length=255)
    amount_minor: Amount
    currency: Currency
    interval: Literal["month", "year"] = "month"
    trial_days: TrialDays = 0


class PlanOut(BaseModel):
    """A plan."""

    id: uuid.UUID
    code: str
    name: str
    amount_minor: int
    currency: str
    interval: str
    trial_days: int
    is_active: bool


class SubscriptionCreate(RequestModel):
    """Subscribe a customer to a plan."""

    customer_id: uuid.UUID
    plan_code: str = Field(pattern=PLAN_CODE_PATTERN, max_length=64)
    quantity: Quantity = 1
    trial_days: TrialDays | None = None


class SubscriptionTransition(RequestModel):
    """Move a subscription to another status."""

    status: Literal["incomplete", "trialing", "active", "past_due", "canceled", "paused", "unpaid"]


class SubscriptionCancel(RequestModel):
    """Cancel now or at the end of the period."""

    at_period_end: StrictBool = False


class SubscriptionOut(BaseModel):
    """A subscription."""

    id: uuid.UUID
    customer_id: uuid.UUID
    plan_code: str
    status: str
    amount_minor: int
    currency: str
    interval: str
    quantity: int
    trial_ends_at: datetime | None
    current_period_start: datetime | None
    current_period_end: datetime | None
    cancel_at_period_end: bool
    canceled_at: datetime | None
    processor: str | None
    processor_subscription_id: str | None


class MilestoneIn(RequestModel):
    """One instalment of a new invoice."""

    name: str = Field(min_length=1, max_length=255)
    amount_minor: Amount
    description: str | None = Field(None, max_length=TEXT_MAX)
    due_at: datetime | None = None


class InvoiceCreate(RequestModel):
    """A new invoice: an amount, or milestones adding up to it."""

    customer_id: uuid.UUID
    invoice_number: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_./-]{0,63}$")
    currency: Currency
    amount_minor: Amount | None = None
    milestones: list[MilestoneIn] = Field(default_factory=list, max_length=100)
    description: str | None = Field(None, max_length=TEXT_MAX)
    due_at: datetime | None = None
    metadata: StringMetadata = Field(default_factory=dict)
    finalize: StrictBool = False


class MilestoneOut(BaseModel):
    """An instalment."""

    id: uuid.UUID
    position: int
    name: str
    amount_minor: int
    status: str
    due_at: datetime | None
    paid_at: datetime | None


class InvoiceOut(BaseModel):
    """An invoice with its milestones."""

    id: uuid.UUID
    customer_id: uuid.UUID
    invoice_number: str
    description: str | None
    amount_minor: int
    amount_paid_minor: int
    currency: str
    status: str
    due_at: datetime | None
    paid_at: datetime | None
    milestones: list[MilestoneOut]
    metadata: dict[str, Any]


class InvoiceStatusChange(RequestModel):
    """Finalize, void or write off an invoice."""

    status: Literal["open", "void", "uncollectible"]


class EventOut(BaseModel):
    """A webhook event as stored."""

    id: uuid.UUID
    processor: str
    event_id: str
    event_type: str
    status: str
    attempts: int
    last_error: str | None
    result: str | None
    received_at: datetime
    processed_at: datetime | None
    next_attempt_at: datetime | None
