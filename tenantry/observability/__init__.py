"""Metrics, alert rules and the doctor's checks: how an operator sees tenantry run."""
