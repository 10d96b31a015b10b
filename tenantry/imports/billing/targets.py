"""The billing tables an import may feed, and what each needs from a legacy row.

A billing row made by an import has an id derived from the app, the table it is in and the
legacy row's external id (:func:`derived_id`): the same legacy row always becomes the same
billing row, so a rerun or a resume finds what it already wrote instead of writing it twice,
and a legacy reference (an invoice's customer) becomes the billing id of what it refers to
without a lookup table.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from enum import StrEnum

from sqlalchemy import Column, Table

from tenantry.db.billing.models import (
    BillingBase,
    BillingCustomer,
    BillingInvoice,
    BillingPayment,
    BillingSubscription,
    BillingWebhook,
    InvoiceStatus,
    PaymentStatus,
    SubscriptionStatus,
    WebhookStatus,
)

#: Namespace of the ids of imported rows (uuid5): stable across tenantry versions.
IMPORT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://tenantry.dev/imports/billing")

#: Currencies whose minor unit is not a hundredth (ISO 4217 exponents); every other has two.
CURRENCY_EXPONENTS: dict[str, int] = {
    **dict.fromkeys("BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX VND VUV XAF XOF XPF".split(), 0),  # noqa: SIM905
    **dict.fromkeys("BHD IQD JOD KWD LYD OMR TND".split(), 3),  # noqa: SIM905
}


def exponent(currency: str) -> int:
    """How many decimals the currency's major unit has (JPY 0, USD 2, KWD 3)."""
    return CURRENCY_EXPONENTS.get(currency, 2)


class TargetName(StrEnum):
    """A billing table an import feeds, in the order they are imported (parents first)."""

    CUSTOMERS = "customers"
    SUBSCRIPTIONS = "subscriptions"
    INVOICES = "invoices"
    PAYMENTS = "payments"
    WEBHOOKS = "webhooks"


@dataclass(frozen=True)
class Link:
    """A reference to another imported row: its billing column and the table it points to."""

    column: str
    to: TargetName
    required: bool


@dataclass(frozen=True)
class Target:
    """One billing table as an import sees it."""

    name: TargetName
    table: Table
    #: References by legacy id (``links: {customer: legacy_customer_id}`` in the mapping).
    links: dict[str, Link] = field(default_factory=dict)
    #: Columns that take the legacy external id when the mapping gives them nothing.
    from_external_id: tuple[str, ...] = ()
    #: Columns billing keeps unique: per app, or per processor for a processor's ids
    #: (``processor_…``). A row already there under another id is a collision the plan reports.
    unique: tuple[str, ...] = ()
    #: Columns a value must be given for, beyond those the schema requires.
    required: tuple[str, ...] = ()
    #: The allowed values of ``status``.
    statuses: frozenset[str] = frozenset()

    @property
    def amount(self) -> str | None:
        """The money column totalled per currency by verification (None: counts only)."""
        return "amount_minor" if "amount_minor" in self.table.c else None

    def column(self, name: str) -> Column[object] | None:
        """The billing column ``name``, if the table has one an import may fill."""
        if name not in self.table.c or name in self.managed():
            return None
        return self.table.c[name]

    def managed(self) -> frozenset[str]:
        """Columns the import fills itself: the id, the app, the links and the metadata."""
        return frozenset(
            {"id", "app_id", "metadata", *(link.column for link in self.links.values())}
        )

    def importable(self) -> list[str]:
        """Every column a mapping may fill, in the table's order."""
        return [c.name for c in self.table.c if c.name not in self.managed()]

    def required_columns(self) -> list[str]:
        """Columns a row must end with a value in: not nullable and without a default."""
        schema = [
            c.name
            for c in self.table.c
            if c.name not in self.managed()
            and not c.nullable
            and c.default is None
            and c.server_default is None
        ]
        return [*schema, *(r for r in self.required if r not in schema)]


def _table(model: type[BillingBase]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)  # a declarative model's table
    return table


def _statuses(values: type[StrEnum]) -> frozenset[str]:
    return frozenset(v.value for v in values)


TARGETS: dict[TargetName, Target] = {
    TargetName.CUSTOMERS: Target(
        TargetName.CUSTOMERS,
        _table(BillingCustomer),
        from_external_id=("external_customer_id",),
        unique=("external_customer_id", "processor_customer_id"),
    ),
    TargetName.SUBSCRIPTIONS: Target(
        TargetName.SUBSCRIPTIONS,
        _table(BillingSubscription),
        links={"customer": Link("customer_id", TargetName.CUSTOMERS, required=True)},
        unique=("processor_subscription_id",),
        required=("amount_minor", "currency"),
        statuses=_statuses(SubscriptionStatus),
    ),
    TargetName.INVOICES: Target(
        TargetName.INVOICES,
        _table(BillingInvoice),
        links={
            "customer": Link("customer_id", TargetName.CUSTOMERS, required=True),
            "subscription": Link("subscription_id", TargetName.SUBSCRIPTIONS, required=False),
        },
        from_external_id=("invoice_number",),
        unique=(
            "invoice_number",
            "processor_invoice_id",
            "processor_checkout_session_id",
            "processor_payment_intent_id",
        ),
        required=("amount_minor", "currency"),
        statuses=_statuses(InvoiceStatus),
    ),
    TargetName.PAYMENTS: Target(
        TargetName.PAYMENTS,
        _table(BillingPayment),
        links={
            "invoice": Link("invoice_id", TargetName.INVOICES, required=False),
            "customer": Link("customer_id", TargetName.CUSTOMERS, required=False),
        },
        from_external_id=("processor_payment_id",),
        unique=("processor_payment_id", "processor_checkout_session_id"),
        required=("amount_minor", "currency"),
        statuses=_statuses(PaymentStatus),
    ),
    TargetName.WEBHOOKS: Target(
        TargetName.WEBHOOKS,
        _table(BillingWebhook),
        from_external_id=("event_id",),
        unique=("event_id",),
        statuses=_statuses(WebhookStatus),
    ),
}

#: The order tables are checked and imported in: a row's references are imported before it.
ORDER: tuple[TargetName, ...] = tuple(TargetName)


def derived_id(app_id: str, target: TargetName, external_id: str) -> uuid.UUID:
    """The billing id of the legacy row ``external_id`` imported into ``target`` for ``app_id``."""
    return uuid.uuid5(IMPORT_NAMESPACE, f"{app_id}\x1f{target.value}\x1f{external_id}")
