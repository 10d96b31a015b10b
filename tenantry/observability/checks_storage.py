"""Doctor checks of what keeps data safe: backups within their policy and restore-tested, and
disk space in the data dir (seed 004: 80 % warning, 90 % critical)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

from tenantry.db.types import utcnow
from tenantry.observability.checks_work import ago
from tenantry.observability.doctor import Check, DoctorContext, Status, ok
from tenantry.services.backups.scheduling import Protection, all_scopes, protection

DISK_WARNING, DISK_CRITICAL = 0.80, 0.90


def backups(context: DoctorContext) -> Iterator[Check]:
    """Each database has a good backup younger than its policy's maximum age, and its newest
    restore test passed (never tested: a warning; failed: critical)."""
    sessions = context.sessions()  # master first: without it nothing here can run
    box = context.secret_box()
    with sessions() as session:
        states = protection(session, all_scopes(session, box, context.settings))
    for state in states:
        yield from _protection(state)


def _protection(state: Protection) -> Iterator[Check]:
    name = f"backup {state.scope}"
    policy = state.policy
    run = f"tenantry backup run --db {state.scope} --verify"
    if state.unverifiable is not None:
        yield Check(
            name,
            Status.CRITICAL,
            f"its backups cannot be restore-tested: {state.unverifiable}",
            run,
        )
        return
    good = state.last_good
    if good is None:
        failed = state.last_attempt
        tried = (
            f"; the last attempt ({failed.id}) is {failed.status}"
            + (f": {failed.error}" if failed.error else "")
            if failed is not None
            else ""
        )
        yield Check(
            name,
            Status.CRITICAL,
            f"no good backup (policy: at most {policy.max_age_hours} h old){tried}",
            run,
            str(failed.id) if failed is not None else None,
        )
        return
    age = ago(good.started_at, state.now)
    if not state.protected:
        yield Check(
            name,
            Status.CRITICAL,
            f"overdue: the newest good backup {good.id} is {age} old, the policy allows "
            f"{policy.max_age_hours} h",
            run,
            str(good.id),
        )
        return
    tested = state.last_verified
    if tested is None:
        yield Check(
            name,
            Status.WARNING,
            f"newest good backup {good.id} is {age} old; this database's backups were "
            "never restore-tested",
            f"tenantry backup verify {good.id}",
            str(good.id),
        )
        return
    if tested.verify_passed is False:
        yield Check(
            name,
            Status.CRITICAL,
            f"the newest restore test (backup {tested.id}, {ago(tested.verified_at, state.now)} "
            f"ago) failed: {tested.verify_error or 'no detail'}",
            f"tenantry backup show {tested.id}, fix the cause, then {run}",
            str(tested.id),
        )
        return
    if state.rto_met is False:
        yield Check(
            name,
            Status.WARNING,
            f"the last restore test took {tested.verify_duration_ms} ms, over the policy's "
            f"RTO of {policy.rto_minutes} min",
            f"tenantry backup policy set {state.scope} --rto-minutes N (a realistic RTO), or "
            "faster storage for the restore",
            str(tested.id),
        )
        return
    yield ok(
        name,
        f"newest good backup {good.id} is {age} old (max {policy.max_age_hours} h); "
        f"restore-tested {ago(tested.verified_at, utcnow())} ago",
    )


def disk(context: DoctorContext) -> Iterator[Check]:
    """The file system of the data dir (SQLite databases, the queue, local backups)."""
    for label, path in _disk_paths(context):
        usage = shutil.disk_usage(path)
        # As df: the share of what non-root users may use that is used.
        share = usage.used / (usage.used + usage.free) if usage.used + usage.free else 0.0
        evidence = f"{path}: {share:.0%} used, {usage.free / 1024**3:.1f} GiB free"
        status = disk_status(share)
        if status is not Status.OK:
            yield Check(
                f"disk {label}",
                status,
                evidence + " (seed 004: > 80 % warning, > 90 % critical)",
                "Free space or grow the volume; tenantry backup prune --confirm drops backups "
                "retention no longer keeps",
            )
        else:
            yield ok(f"disk {label}", evidence)


def disk_status(share: float) -> Status:
    """Seed 004's disk thresholds for a used share of 0..1: above 80 % warning, above 90 %
    critical."""
    if share > DISK_CRITICAL:
        return Status.CRITICAL
    return Status.WARNING if share > DISK_WARNING else Status.OK


def _disk_paths(context: DoctorContext) -> list[tuple[str, Path]]:
    settings = context.settings
    paths = [("data dir", settings.data_dir)]
    if settings.backup_s3_bucket is None and settings.backup_dir is not None:
        paths.append(("backups", settings.backup_dir))
    found: list[tuple[str, Path]] = []
    seen: set[int] = set()
    for label, path in paths:
        existing = _existing(path)
        if existing is None:
            continue
        device = existing.stat().st_dev
        if device not in seen:  # one line per file system
            seen.add(device)
            found.append((label, existing))
    return found


def _existing(path: Path) -> Path | None:
    """``path`` or its nearest existing parent."""
    for candidate in (path, *path.absolute().parents):
        if candidate.exists():
            return candidate
    return None
