"""The billing service layer: over the billing database only, never master or tenants.

Functions take a billing session; the caller owns the transaction.
:class:`tenantry.billing.service.BillingService` wraps them with transactions for application
code, as the seeds' ``billingService`` did.
"""
