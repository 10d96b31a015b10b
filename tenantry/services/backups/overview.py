"""Each database's protection against its backup policy, one row per database: master,
billing, then a page of stores (what the console's Backups page lists).

A fixed number of queries per page whatever the number of stores: the policies are read
once, and the newest good backup and last passed restore test of the page's stores in one
grouped query each.

The state says how the database stands against its policy, in words as well as a colour:
``red`` (no good backup, or the newest is older than the policy's maximum age, or the newest
restore test failed), ``amber`` (the newest good backup is past three quarters of that age,
or no restore test ever passed), ``green`` otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tenantry.db.master.models import (
    GOOD_BACKUP_STATUSES,
    Backup,
    BackupPolicy,
    Store,
)
from tenantry.db.schemas import Role
from tenantry.db.types import utcnow
from tenantry.services.backups.policies import DEFAULTS, Policy, policy_for
from tenantry.services.backups.targets import STORE_PREFIX

#: Past this share of the policy's maximum age, a database is amber.
AMBER_SHARE = 0.75


@dataclass(frozen=True)
class Protection:
    """One database against its policy."""

    scope: str
    policy: Policy
    last_backup_at: datetime | None
    last_verified_at: datetime | None
    last_test_failed: bool
    state: str  # green | amber | red
    why: str


def judge(
    policy: Policy,
    last_backup: datetime | None,
    last_verified: datetime | None,
    test_failed: bool,
    now: datetime,
) -> tuple[str, str]:
    """The state (green, amber, red) of a database against ``policy``, and why."""
    if last_backup is None:
        return "red", "no good backup"
    age_h = (now - last_backup).total_seconds() / 3600
    if age_h > policy.max_age_hours:
        return "red", f"newest backup {age_h:.0f} h old, policy allows {policy.max_age_hours} h"
    if test_failed:
        return "red", "the newest restore test failed"
    if age_h > AMBER_SHARE * policy.max_age_hours:
        return "amber", f"newest backup {age_h:.0f} h old of {policy.max_age_hours} h allowed"
    if last_verified is None:
        return "amber", "no restore test has passed yet"
    return "green", f"newest backup {age_h:.1f} h old of {policy.max_age_hours} h allowed"


def _newest(
    session: Session, role: str, store_ids: list[object] | None
) -> tuple[dict[object, datetime], dict[object, datetime], set[object]]:
    """Per store id (None for master or billing): newest good backup, newest passed
    restore test, and the ids whose newest restore test failed."""
    key = Backup.store_id
    scoped = [Backup.role == role]
    if store_ids is not None:
        scoped.append(Backup.store_id.in_(store_ids))
    good = session.execute(
        select(key, func.max(Backup.started_at))
        .where(*scoped, Backup.status.in_(GOOD_BACKUP_STATUSES))
        .group_by(key)
    ).all()
    # Restore tests are few (one per schedule tick, pruned with their backups): read them
    # and keep each database's newest, and its newest that passed.
    tests = session.execute(
        select(key, Backup.verified_at, Backup.verify_passed).where(
            *scoped, Backup.verified_at.is_not(None)
        )
    ).all()
    passed: dict[object, datetime] = {}
    newest: dict[object, tuple[datetime, bool]] = {}
    for sid, at, ok in tests:
        if at is None:
            continue
        if ok and (sid not in passed or at > passed[sid]):
            passed[sid] = at
        if sid not in newest or at > newest[sid][0]:
            newest[sid] = (at, bool(ok))
    failed = {sid for sid, (_, ok) in newest.items() if not ok}
    return {k: v for k, v in good if v is not None}, passed, failed


def _single(session: Session, role: str, now: datetime) -> Protection:
    policy = policy_for(session, role)
    good, passed, failed = _newest(session, role, None)
    last = max(good.values(), default=None)
    verified = max(passed.values(), default=None)
    test_failed = bool(failed)
    state, why = judge(policy, last, verified, test_failed, now)
    return Protection(role, policy, last, verified, test_failed, state, why)


def platform_protection(session: Session, now: datetime | None = None) -> list[Protection]:
    """Master's and billing's protection."""
    now = now or utcnow()
    return [_single(session, role, now) for role in ("master", "billing")]


def store_protection(
    session: Session, stores: list[Store], now: datetime | None = None
) -> list[Protection]:
    """The protection of each of ``stores`` (a page of them), in their order."""
    now = now or utcnow()
    if not stores:
        return []
    scopes = [f"{STORE_PREFIX}{s.slug}" for s in stores]
    rows = {
        r.scope: r
        for r in session.scalars(
            select(BackupPolicy).where(BackupPolicy.scope.in_([*scopes, "tenant"]))
        )
    }
    tenant = policy_for(session, "tenant") if "tenant" in rows else DEFAULTS["tenant"]
    ids: list[object] = [s.id for s in stores]
    good, passed, failed = _newest(session, Role.TENANT.value, ids)
    found = []
    for store, scope in zip(stores, scopes, strict=True):
        policy = policy_for(session, scope) if scope in rows else replace(tenant, scope=scope)
        last, verified = good.get(store.id), passed.get(store.id)
        state, why = judge(policy, last, verified, store.id in failed, now)
        found.append(Protection(scope, policy, last, verified, store.id in failed, state, why))
    return found
