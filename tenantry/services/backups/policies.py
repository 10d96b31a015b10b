"""Backup policies: how often each database is backed up, kept, verified and expected back.

Defaults follow the seeds (billing is revenue-critical: every 6 h, 90 days, recovery in under
an hour; master daily, 30 days, under 4 h; tenants daily, 14 days). A row in
``backup_policies`` overrides them for ``master``, ``billing``, every tenant (``tenant``) or
one store (``store:<slug>``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any

from croniter import croniter
from sqlalchemy import select
from sqlalchemy.orm import Session

from tenantry.db.master.models import BackupPolicy
from tenantry.errors import InvalidInput
from tenantry.services.backups.targets import STORE_PREFIX, parse_scope


@dataclass(frozen=True)
class Policy:
    """The effective policy of one database (or of every tenant)."""

    scope: str
    schedule: str  # cron: when backups are due
    retention_days: int  # backups older than this are pruned …
    min_keep: int  # … but never the newest ``min_keep`` good ones
    max_age_hours: int  # no good backup younger than this: the database is unprotected
    rto_minutes: int  # the recovery time objective a verified restore is measured against
    verify_schedule: str  # cron: when the newest backup is restored as a test
    enabled: bool = True
    #: Where the values come from: ``default``, or the scope of the row that set them.
    source: str = "default"

    def document(self) -> dict[str, Any]:
        """The policy as JSON."""
        return asdict(self)


DEFAULTS: dict[str, Policy] = {
    "billing": Policy("billing", "0 */6 * * *", 90, 4, 12, 60, "30 3 * * *"),
    "master": Policy("master", "0 2 * * *", 30, 3, 36, 240, "0 4 * * 0"),
    "tenant": Policy("tenant", "0 3 * * *", 14, 2, 36, 240, "0 5 * * 0"),
}
FIELDS = ("schedule", "retention_days", "min_keep", "max_age_hours", "rto_minutes")
#: What each number may be: at most a hundred years (and what the integer columns hold).
BOUNDS = {
    "retention_days": (1, 36_500),
    "min_keep": (0, 100_000),
    "max_age_hours": (1, 876_000),
    "rto_minutes": (1, 52_560_000),
}


def _from_row(scope: str, row: BackupPolicy) -> Policy:
    return Policy(
        scope,
        row.schedule,
        row.retention_days,
        row.min_keep,
        row.max_age_hours,
        row.rto_minutes,
        row.verify_schedule,
        row.enabled,
        source=row.scope,
    )


def check_scope(scope: str) -> str:
    """A valid policy scope: ``master``, ``billing``, ``tenant`` or ``store:<slug>``."""
    if scope == "tenant":
        return scope
    parse_scope(scope)
    return scope


def policy_for(session: Session, scope: str) -> Policy:
    """The effective policy of ``scope`` (a store falls back to the tenant policy)."""
    check_scope(scope)
    row = session.get(BackupPolicy, scope)
    if row is not None:
        return _from_row(scope, row)
    if scope.startswith(STORE_PREFIX):
        tenant = session.get(BackupPolicy, "tenant")
        base = _from_row(scope, tenant) if tenant else DEFAULTS["tenant"]
        return replace(base, scope=scope)
    return DEFAULTS[scope]


def policies_for(session: Session, scopes: list[str]) -> dict[str, Policy]:
    """:func:`policy_for` of each scope, from one read of the policy table (thousands of
    stores cost one query, not one each)."""
    rows = {r.scope: r for r in session.scalars(select(BackupPolicy))}
    tenant = rows.get("tenant")
    base = _from_row("tenant", tenant) if tenant else DEFAULTS["tenant"]
    found: dict[str, Policy] = {}
    for scope in scopes:
        check_scope(scope)
        if scope in rows:
            found[scope] = _from_row(scope, rows[scope])
        elif scope.startswith(STORE_PREFIX):
            found[scope] = replace(base, scope=scope)
        else:
            found[scope] = DEFAULTS[scope]
    return found


def list_policies(session: Session) -> list[Policy]:
    """The master, billing and tenant policies, then every per-store override."""
    rows = {r.scope: r for r in session.query(BackupPolicy).all()}
    found = [policy_for(session, scope) for scope in ("master", "billing", "tenant")]
    found += [_from_row(s, rows[s]) for s in sorted(rows) if s.startswith(STORE_PREFIX)]
    return found


def _check_cron(value: str, option: str) -> str:
    if not croniter.is_valid(value):
        raise InvalidInput(
            f"{option} {value!r} is not a cron expression.",
            "Use five fields: minute hour day-of-month month day-of-week, e.g. '0 */6 * * *'.",
        )
    return value


def set_policy(session: Session, scope: str, **changes: Any) -> Policy:
    """Override some of ``scope``'s policy values (the others keep their effective value)."""
    current = policy_for(session, check_scope(scope))
    values = {k: v for k, v in changes.items() if v is not None}
    for name in ("schedule", "verify_schedule"):
        if name in values:
            _check_cron(str(values[name]), f"--{name.replace('_', '-')}")
    for name, (low, high) in BOUNDS.items():
        if name in values and not low <= int(values[name]) <= high:
            raise InvalidInput(
                f"--{name.replace('_', '-')} must be from {low} to {high}.",
                "Give a number in that range.",
            )
    merged = replace(current, **values, source=scope)
    row = session.get(BackupPolicy, scope) or BackupPolicy(scope=scope)
    for name in (*FIELDS, "verify_schedule", "enabled"):
        setattr(row, name, getattr(merged, name))
    session.add(row)
    return merged


def next_due(cron: str, after: datetime) -> datetime:
    """The first time ``cron`` fires after ``after`` (timezone-aware, UTC)."""
    return croniter(cron, after).get_next(datetime)
