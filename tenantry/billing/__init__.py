"""Billing: the payment processors' adapters.

The billing services themselves live in ``tenantry.services.billing``.
"""
