"""Billing: the payment processors' adapters, and :class:`~tenantry.billing.service.BillingService`
(in ``service.py``), the billing API for application code, one transaction per call.

The billing services themselves live in ``tenantry.services.billing``.
"""
