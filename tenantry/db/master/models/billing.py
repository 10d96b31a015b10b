"""The platform's own billing of its stores (plans, charges) and their daily usage."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Date, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tenantry.db.master.models.base import MasterBase
from tenantry.db.master.models.stores import SubscriptionStatus
from tenantry.db.types import CreatedAt, Currency, Money, UpdatedAt, UTCDateTime, UuidPk, utcnow


class BillingCycle(StrEnum):
    """How often a platform subscription is billed."""

    MONTHLY = "monthly"
    ANNUAL = "annual"


class TransactionStatus(StrEnum):
    """State of a platform billing transaction."""

    PENDING = "pending"
    COMPLETED = "completed"
    FAILED = "failed"
    REFUNDED = "refunded"


class Subscription(MasterBase):
    """A store's platform plan, with its price and resource limits."""

    __tablename__ = "subscriptions"

    id: Mapped[UuidPk]
    store_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("stores.id", ondelete="CASCADE"), index=True
    )
    plan_name: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32), default=SubscriptionStatus.ACTIVE)

    # Pricing
    price_monthly_minor: Mapped[Money]
    price_annual_minor: Mapped[Money]
    currency: Mapped[Currency]
    billing_cycle: Mapped[str] = mapped_column(String(16), default=BillingCycle.MONTHLY)

    # Limits (None means unlimited)
    max_products: Mapped[int | None] = mapped_column(Integer)
    max_orders_per_month: Mapped[int | None] = mapped_column(Integer)
    max_storage_gb: Mapped[int | None] = mapped_column(Integer)
    max_api_calls_per_month: Mapped[int | None] = mapped_column(Integer)

    # Dates
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    trial_ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    current_period_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    current_period_end: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    created_at: Mapped[CreatedAt]
    updated_at: Mapped[UpdatedAt]


class BillingTransaction(MasterBase):
    """One charge or refund of a store's platform subscription."""

    __tablename__ = "billing_transactions"
    __table_args__ = (UniqueConstraint("payment_method", "payment_provider_id"),)

    id: Mapped[UuidPk]
    store_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("stores.id", ondelete="CASCADE"), index=True
    )
    subscription_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("subscriptions.id", ondelete="SET NULL"), index=True
    )
    amount_minor: Mapped[Money]
    currency: Mapped[Currency]
    status: Mapped[str] = mapped_column(String(32), default=TransactionStatus.PENDING)
    payment_method: Mapped[str | None] = mapped_column(String(32))
    payment_provider_id: Mapped[str | None] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    invoice_url: Mapped[str | None] = mapped_column(String(500))
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[CreatedAt]


class UsageMetric(MasterBase):
    """A store's resource usage for one day."""

    __tablename__ = "usage_metrics"
    __table_args__ = (UniqueConstraint("store_id", "metric_date"),)

    id: Mapped[UuidPk]
    store_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    metric_date: Mapped[date] = mapped_column(Date)

    # Product metrics
    products_created: Mapped[int] = mapped_column(Integer, default=0)
    products_updated: Mapped[int] = mapped_column(Integer, default=0)
    products_deleted: Mapped[int] = mapped_column(Integer, default=0)
    total_products: Mapped[int] = mapped_column(Integer, default=0)

    # Order metrics
    orders_created: Mapped[int] = mapped_column(Integer, default=0)
    orders_total_value_minor: Mapped[Money]

    # Storage metrics
    storage_uploaded_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    storage_deleted_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    storage_total_bytes: Mapped[int] = mapped_column(BigInteger, default=0)

    # API metrics
    api_calls: Mapped[int] = mapped_column(Integer, default=0)
    api_errors: Mapped[int] = mapped_column(Integer, default=0)

    created_at: Mapped[CreatedAt]


class ApiUsageLog(MasterBase):
    """One API request made against a store."""

    __tablename__ = "api_usage_logs"
    __table_args__ = (Index(None, "store_id", "created_at"),)

    id: Mapped[UuidPk]
    store_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    endpoint: Mapped[str] = mapped_column(String(255))
    method: Mapped[str] = mapped_column(String(10))
    status_code: Mapped[int | None] = mapped_column(Integer)
    response_time_ms: Mapped[int | None] = mapped_column(Integer)
    ip_address: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(Text)
    error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[CreatedAt]
