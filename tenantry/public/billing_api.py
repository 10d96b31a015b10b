"""``app.billing``: the billing database for application code, on the platform's engine."""

from __future__ import annotations

from typing import Any

from tenantry.billing.service import BillingService
from tenantry.db.billing.models import BillingCustomer


class Customers:
    """``app.billing.customers``: an app's billing customers."""

    def __init__(self, service: BillingService, app_id: str) -> None:
        self._service = service
        self._app_id = app_id

    def create(
        self,
        external_customer_id: str,
        *,
        email: str | None = None,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
        app_id: str | None = None,
    ) -> BillingCustomer:
        """The customer ``external_customer_id`` of the app (``TENANTRY_APP`` unless
        ``app_id`` is given), created once: a second call returns the first customer."""
        return self._service.create_customer(
            app_id or self._app_id, email, name, external_customer_id, metadata
        )


class BillingApi:
    """Billing for application code: ``customers``, and ``service`` (the whole
    :class:`~tenantry.billing.service.BillingService`: plans, subscriptions, invoices)."""

    def __init__(self, service: BillingService, app_id: str) -> None:
        self.service = service
        self.customers = Customers(service, app_id)
