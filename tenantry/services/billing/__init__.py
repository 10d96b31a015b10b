"""The billing service layer: over the billing database only, never master or tenants.

Functions take a billing session; the caller owns the transaction. :class:`BillingService`
(in ``service.py``) wraps them with transactions for library users, as the seeds'
``billingService`` did.
"""
