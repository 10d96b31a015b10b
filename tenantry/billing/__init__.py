"""Billing: payment processors' adapters (the billing services live in tenantry.services.billing)."""
