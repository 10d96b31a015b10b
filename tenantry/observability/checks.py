"""Every doctor check, in the order ``tenantry doctor`` shows them, and the one call that
runs them all (the CLI and the worker's periodic run share it)."""

from __future__ import annotations

from tenantry.observability import checks_databases as db
from tenantry.observability import checks_security as security
from tenantry.observability import checks_storage as storage
from tenantry.observability import checks_work as work
from tenantry.observability.doctor import Check, CheckFn, DoctorContext, run_checks

#: (name used when the check cannot run, check), in the order they are shown.
CHECKS: tuple[tuple[str, CheckFn], ...] = (
    ("database connections", db.connections),
    ("database identities", db.identities),
    ("servers connect", db.servers),
    ("tenant migrations", db.fleet),
    ("TLS", db.tls),
    ("key file", security.key_file),
    ("webhook secrets", security.webhook_secrets),
    ("worker", work.worker),
    ("job queue", work.queue),
    ("waiting work", work.waiting_work),
    ("webhook failures", work.webhook_failures),
    ("webhook backlog", work.webhook_backlog),
    ("backups", storage.backups),
    ("disk", storage.disk),
    ("stale templates", db.stale_templates),
    ("spare databases", db.spare_databases),
)


def diagnose(context: DoctorContext) -> list[Check]:
    """Run every check on ``context``."""
    return run_checks(context, CHECKS)
