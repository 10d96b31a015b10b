"""Request and response bodies of the HTTP API."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, Field

from tenantry.api.fields import (
    LABEL_PATTERN,
    SLUG_PATTERN,
    TEXT_MAX,
    Quantity,
    RequestModel,
    StrictBool,
    UInt64,
)

Slug = Field(
    pattern=SLUG_PATTERN,
    min_length=3,
    max_length=63,
    description="3-63 lowercase letters, digits and single hyphens, no hyphen at either end.",
)


class StoreCreate(RequestModel):
    """A new store."""

    slug: str = Slug
    name: str = Field(min_length=1, max_length=255)
    plan: Literal["free", "starter", "professional", "enterprise"] = "free"
    region: str | None = Field(
        None,
        pattern=LABEL_PATTERN,
        description="Data residency: its database only ever lives on servers of this region.",
    )
    tier: str | None = Field(
        None, pattern=LABEL_PATTERN, description="Its database only lives on servers of this tier."
    )


class StoreUpdate(RequestModel):
    """Changes to a store (the slug never changes)."""

    name: str | None = Field(None, min_length=1, max_length=255)
    plan: Literal["free", "starter", "professional", "enterprise"] | None = None
    is_published: StrictBool | None = None


class StoreOut(BaseModel):
    """A store as master knows it."""

    id: uuid.UUID
    slug: str
    name: str
    status: str
    database_status: str
    database_type: str | None
    plan: str
    subscription_status: str
    product_count: int
    order_count: int
    api_calls_month: int
    is_published: bool
    created_at: datetime
    updated_at: datetime
    billing_customer_id: uuid.UUID | None = None
    residency_region: str | None = None
    residency_tier: str | None = None


class UsageDayOut(BaseModel):
    """A store's usage on one UTC day (products, orders, storage, API calls)."""

    date: date
    total_products: int
    products_created: int
    products_updated: int
    products_deleted: int
    orders_created: int
    orders_total_value_minor: int
    storage_total_bytes: int
    storage_uploaded_bytes: int
    storage_deleted_bytes: int
    api_calls: int
    api_errors: int


class UsageOut(BaseModel):
    """A store's last measured storage against its plan's limit, and its daily usage rows
    (oldest first; a day not rolled up yet is absent)."""

    store: str
    plan: str
    storage_used_bytes: int
    storage_limit_bytes: int | None = Field(description="None: the plan has no storage limit.")
    storage_measured_at: datetime | None
    days: list[UsageDayOut]


class StoreList(BaseModel):
    """A page of stores."""

    items: list[StoreOut]
    total: int


class ProvisionRequest(RequestModel):
    """How to give a store its database."""

    mode: Literal["create_new", "connect_existing"] = "create_new"
    server: str | None = Field(
        None,
        max_length=63,
        description="Registered server name (create_new); left out, placement picks one that "
        "matches the store's residency (a SQLite file when none is registered); `sqlite` for "
        "a SQLite file.",
    )
    url: str | None = Field(None, max_length=2048, description="Database URL (connect_existing).")


class SharedProvisionRequest(RequestModel):
    """Where to give a store its own schema in a shared PostgreSQL database."""

    target: str = Field(
        min_length=1,
        max_length=127,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}(/[a-z][a-z0-9_]{0,62})?$",
        description="SERVER[/DATABASE]: a registered PostgreSQL server, and the shared "
        "database on it (tenantry_shared_1 when left out; created when missing).",
    )


class JobOut(BaseModel):
    """A provisioning job's state."""

    id: uuid.UUID
    store_id: uuid.UUID
    mode: str
    status: str
    step: str | None
    progress: int
    message: str | None
    tables_created: int
    total_tables: int
    error: str | None
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobAccepted(BaseModel):
    """The answer to a provisioning request."""

    job_id: uuid.UUID
    status: str
    status_url: str


class ProductCreate(RequestModel):
    """A new product."""

    sku: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=255)
    slug: str | None = Field(None, min_length=1, max_length=255, pattern=r"^[a-z0-9-]+$")
    description: str | None = Field(None, max_length=TEXT_MAX)
    status: Literal["draft", "active", "archived"] = "active"
    price_minor: UInt64 | None = None
    currency: str = Field("USD", pattern=r"^[A-Z]{3}$")


class ProductUpdate(RequestModel):
    """Changes to a product."""

    name: str | None = Field(None, min_length=1, max_length=255)
    slug: str | None = Field(None, min_length=1, max_length=255, pattern=r"^[a-z0-9-]+$")
    description: str | None = Field(None, max_length=TEXT_MAX)
    status: Literal["draft", "active", "archived"] | None = None
    price_minor: UInt64 | None = None
    currency: str | None = Field(None, pattern=r"^[A-Z]{3}$")


class ProductOut(BaseModel):
    """A product with its default price."""

    id: uuid.UUID
    sku: str
    slug: str
    name: str
    description: str | None
    status: str
    price_minor: int | None
    currency: str | None
    created_at: datetime
    updated_at: datetime


class OrderLineIn(RequestModel):
    """One line of a new order."""

    product_id: uuid.UUID
    quantity: Quantity


class OrderCreate(RequestModel):
    """A new order."""

    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+$", max_length=255)
    currency: str = Field("USD", pattern=r"^[A-Z]{3}$")
    items: list[OrderLineIn] = Field(min_length=1, max_length=500)


class OrderItemOut(BaseModel):
    """One line of an order."""

    product_id: uuid.UUID | None
    sku: str
    name: str
    quantity: int
    unit_price_minor: int
    total_minor: int


class OrderOut(BaseModel):
    """An order with its lines."""

    id: uuid.UUID
    order_number: str
    status: str
    email: str
    currency: str
    subtotal_minor: int
    total_minor: int
    placed_at: datetime
    items: list[OrderItemOut]
