"""The public Python API for application code: :class:`~tenantry.public.tenantry.Tenantry`
and what it hands out (store, provisioning and billing helpers). Import it as
``from tenantry import Tenantry``."""
