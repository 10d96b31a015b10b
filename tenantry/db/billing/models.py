"""Models of the billing (accounts-receivable) database.

One billing database is shared by many apps: every top-level row carries the ``app_id`` of
the app it belongs to, and apps link to it through ids of their own (``external_customer_id``),
never through cross-database foreign keys.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from tenantry.crypto import sealed_column
from tenantry.db.types import (
    NAMING_CONVENTION,
    TYPE_ANNOTATION_MAP,
    CreatedAt,
    Currency,
    JsonDoc,
    Money,
    UpdatedAt,
    UTCDateTime,
    UuidPk,
    utcnow,
)


class BillingBase(DeclarativeBase):
    """Declarative base of the billing schema."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = TYPE_ANNOTATION_MAP


# --------------------------------------------------------------------------- value sets


class SubscriptionStatus(StrEnum):
    """State of a billing subscription (mirrors the payment processor's states)."""

    INCOMPLETE = "incomplete"
    TRIALING = "trialing"
    ACTIVE = "active"
    PAST_DUE = "past_due"
    CANCELED = "canceled"
    PAUSED = "paused"
    UNPAID = "unpaid"


class BillingInterval(StrEnum):
    """How often a subscription renews."""

    MONTH = "month"
    YEAR = "year"


class InvoiceStatus(StrEnum):
    """Lifecycle of an invoice."""

    DRAFT = "draft"
    OPEN = "open"
    PAID = "paid"
    VOID = "void"
    UNCOLLECTIBLE = "uncollectible"


class MilestoneStatus(StrEnum):
    """State of one milestone (instalment) of an invoice."""

    PENDING = "pending"
    PAID = "paid"
    VOID = "void"


class PaymentStatus(StrEnum):
    """State of a payment."""

    PROCESSING = "processing"
    REQUIRES_ACTION = "requires_action"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REFUNDED = "refunded"
    PARTIALLY_REFUNDED = "partially_refunded"
    CANCELED = "canceled"


class WebhookStatus(StrEnum):
    """Processing state of a received processor webhook."""

    RECEIVED = "received"
    PROCESSING = "processing"
    PROCESSED = "processed"
    FAILED = "failed"
    IGNORED = "ignored"


# --------------------------------------------------------------------------- models


class BillingCustomer(BillingBase):
    """A customer of one app, linked to the app by the app's own customer id."""

    __tablename__ = "billing_customers"
    __table_args__ = (
        UniqueConstraint("app_id", "external_customer_id"),
        UniqueConstraint("processor", "processor_customer_id"),
        Index(None, "app_id", "email"),
    )

    id: Mapped[UuidPk]
    # Indexed as the leading column of the unique constraint and the email index.
    app_id: Mapped[str] = mapped_column(String(64))
    external_customer_id: Mapped[str] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(255))
    name: Mapped[str | None] = mapped_column(String(255))
    metadata_: Mapped[JsonDoc] = mapped_column("metadata")
    processor: Mapped[str | None] = mapped_column(String(16))
    processor_customer_id: Mapped[str | None] = mapped_column(String(255))
    #: When personal data was erased on request; the row is kept for the books.
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[UpdatedAt]


class BillingSubscription(BillingBase):
    """A recurring charge of a customer for a plan."""

    __tablename__ = "billing_subscriptions"
    __table_args__ = (
        UniqueConstraint("processor", "processor_subscription_id"),
        Index(None, "app_id", "status"),
    )

    id: Mapped[UuidPk]
    # Indexed as the leading column of (app_id, status).
    app_id: Mapped[str] = mapped_column(String(64))
    customer_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("billing_customers.id", ondelete="RESTRICT"), index=True
    )
    plan_code: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32), default=SubscriptionStatus.INCOMPLETE)
    amount_minor: Mapped[Money]
    currency: Mapped[Currency]
    interval: Mapped[str] = mapped_column(String(16), default=BillingInterval.MONTH)
    quantity: Mapped[int] = mapped_column(Integer, default=1)
    processor: Mapped[str | None] = mapped_column(String(16))
    processor_subscription_id: Mapped[str | None] = mapped_column(String(255))
    trial_ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    current_period_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    current_period_end: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_at_period_end: Mapped[bool] = mapped_column(Boolean, default=False)
    canceled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: When the newest processor event applied to it happened: older events are stale.
    last_event_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    metadata_: Mapped[JsonDoc] = mapped_column("metadata")
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[UpdatedAt]


class BillingInvoice(BillingBase):
    """An amount owed by a customer, optionally split into milestones."""

    __tablename__ = "billing_invoices"
    __table_args__ = (
        UniqueConstraint("app_id", "invoice_number"),
        UniqueConstraint("processor", "processor_invoice_id"),
        UniqueConstraint("processor", "processor_checkout_session_id"),
        UniqueConstraint("processor", "processor_payment_intent_id"),
    )

    id: Mapped[UuidPk]
    # Indexed as the leading column of (app_id, invoice_number).
    app_id: Mapped[str] = mapped_column(String(64))
    customer_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("billing_customers.id", ondelete="RESTRICT"), index=True
    )
    subscription_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("billing_subscriptions.id", ondelete="SET NULL"), index=True
    )
    invoice_number: Mapped[str] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(Text)
    amount_minor: Mapped[Money]
    amount_paid_minor: Mapped[Money]
    currency: Mapped[Currency]
    status: Mapped[str] = mapped_column(String(32), default=InvoiceStatus.DRAFT)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    voided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    processor: Mapped[str | None] = mapped_column(String(16))
    processor_invoice_id: Mapped[str | None] = mapped_column(String(255))
    processor_checkout_session_id: Mapped[str | None] = mapped_column(String(255))
    processor_payment_intent_id: Mapped[str | None] = mapped_column(String(255))
    metadata_: Mapped[JsonDoc] = mapped_column("metadata")
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[UpdatedAt]

    milestones: Mapped[list[BillingInvoiceMilestone]] = relationship(
        back_populates="invoice",
        order_by="BillingInvoiceMilestone.position",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )


class BillingInvoiceMilestone(BillingBase):
    """One instalment of an invoice, payable on its own."""

    __tablename__ = "billing_invoice_milestones"
    __table_args__ = (UniqueConstraint("invoice_id", "position"),)

    id: Mapped[UuidPk]
    invoice_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("billing_invoices.id", ondelete="CASCADE")
    )
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    amount_minor: Mapped[Money]
    status: Mapped[str] = mapped_column(String(32), default=MilestoneStatus.PENDING)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[UpdatedAt]

    invoice: Mapped[BillingInvoice] = relationship(back_populates="milestones")


class BillingPayment(BillingBase):
    """Money received (or attempted) through a payment processor."""

    __tablename__ = "billing_payments"
    __table_args__ = (
        UniqueConstraint("processor", "processor_payment_id"),
        UniqueConstraint("processor", "processor_checkout_session_id"),
    )

    id: Mapped[UuidPk]
    app_id: Mapped[str] = mapped_column(String(64), index=True)
    invoice_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("billing_invoices.id", ondelete="SET NULL"), index=True
    )
    milestone_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("billing_invoice_milestones.id", ondelete="SET NULL"), index=True
    )
    customer_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("billing_customers.id", ondelete="SET NULL"), index=True
    )
    amount_minor: Mapped[Money]
    amount_refunded_minor: Mapped[Money]
    currency: Mapped[Currency]
    status: Mapped[str] = mapped_column(String(32), default=PaymentStatus.PROCESSING)
    processor: Mapped[str] = mapped_column(String(16))
    #: The processor's payment intent or charge id.
    processor_payment_id: Mapped[str] = mapped_column(String(255))
    processor_checkout_session_id: Mapped[str | None] = mapped_column(String(255))
    failure_code: Mapped[str | None] = mapped_column(String(64))
    failure_message: Mapped[str | None] = mapped_column(Text)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: When the newest processor event applied to it happened: older events are stale.
    last_event_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    metadata_: Mapped[JsonDoc] = mapped_column("metadata")
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[UpdatedAt]


class BillingWebhook(BillingBase):
    """A webhook event received from a payment processor, kept raw for replay."""

    __tablename__ = "billing_webhooks"
    __table_args__ = (
        # Per app: one processor account may deliver the same event to several apps'
        # endpoints, and each app must get it.
        UniqueConstraint("app_id", "processor", "event_id"),
        # Retries due (failed, by next attempt); new events in the order received (claims).
        Index(None, "status", "next_attempt_at"),
        Index(None, "status", "received_at"),
        Index(None, "app_id", "received_at"),
    )

    id: Mapped[UuidPk]
    # Indexed as the leading column of (app_id, received_at).
    app_id: Mapped[str] = mapped_column(String(64))
    processor: Mapped[str] = mapped_column(String(16))
    event_id: Mapped[str] = mapped_column(String(255))
    event_type: Mapped[str] = mapped_column(String(128), index=True)
    #: The raw request body, byte for byte as signed; can exceed MySQL's 64 KB TEXT.
    payload: Mapped[str] = mapped_column(Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb"))
    status: Mapped[str] = mapped_column(String(32), default=WebhookStatus.RECEIVED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    processing_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: What processing did ("payment pi_… succeeded", "ignored: …").
    result: Mapped[str | None] = mapped_column(String(255))


class BillingPlan(BillingBase):
    """A price an app charges on a schedule."""

    __tablename__ = "billing_plans"
    __table_args__ = (UniqueConstraint("app_id", "code"),)

    id: Mapped[UuidPk]
    app_id: Mapped[str] = mapped_column(String(64))
    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(255))
    amount_minor: Mapped[Money]
    currency: Mapped[Currency]
    interval: Mapped[str] = mapped_column(String(16), default=BillingInterval.MONTH)
    trial_days: Mapped[int] = mapped_column(Integer, default=0)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[UpdatedAt]


class BillingProcessorSecret(BillingBase):
    """A webhook signing secret of one app at one processor; several may be active."""

    __tablename__ = "billing_processor_secrets"
    __table_args__ = (Index(None, "app_id", "processor"),)

    id: Mapped[UuidPk]
    app_id: Mapped[str] = mapped_column(String(64))
    processor: Mapped[str] = mapped_column(String(16))
    #: Fernet token of the secret.
    secret_encrypted: Mapped[str] = sealed_column()
    #: The secret's last four characters, to tell secrets apart without revealing them.
    hint: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[CreatedAt]
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class BillingIdempotencyKey(BillingBase):
    """The first response to a POST made with an Idempotency-Key, replayed for retries."""

    __tablename__ = "billing_idempotency_keys"
    __table_args__ = (UniqueConstraint("app_id", "key"),)

    id: Mapped[UuidPk]
    app_id: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(255))
    #: SHA-256 of method, path and body: the key is bound to one request.
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None] = mapped_column(Integer)  # None while in progress
    response_body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[CreatedAt]
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class BillingAuditLog(BillingBase):
    """Who did what in the billing database (erasures, secret changes, replays)."""

    __tablename__ = "billing_audit_logs"
    __table_args__ = (Index(None, "app_id", "created_at"),)

    id: Mapped[UuidPk]
    app_id: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str] = mapped_column(String(64))
    target_id: Mapped[str | None] = mapped_column(String(255))
    details: Mapped[JsonDoc]
    created_at: Mapped[CreatedAt] = mapped_column(index=True)
    #: succeeded, failed or refused (services.audit.Outcome).
    outcome: Mapped[str] = mapped_column(
        String(16), default="succeeded", server_default="succeeded"
    )


metadata = BillingBase.metadata
