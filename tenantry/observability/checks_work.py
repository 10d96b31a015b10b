"""Doctor checks of the background work: a worker alive, nothing waiting too long, webhooks
applied and not failing (seed 004's 5 % / 10 %), and the job queue answering."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select

from tenantry.db.billing.models import BillingWebhook, WebhookStatus
from tenantry.db.master.models import Operation, OperationStatus, Worker
from tenantry.db.master.models.operations import ACTIVE_STATUSES, HELD_STATUSES
from tenantry.db.types import utcnow
from tenantry.observability.doctor import Check, DoctorContext, Skipped, Status, describe, ok
from tenantry.services import workers
from tenantry.services.backups.policies import policy_for
from tenantry.services.operation_rows import lease_lapsed

START_WORKER = "tenantry worker (or tenantry up, which runs one)"
#: A queued operation no worker took within this is waiting too long…
QUEUED_WARNING = timedelta(minutes=5)
#: … and this long, critically.
QUEUED_CRITICAL = timedelta(minutes=30)
#: A running operation whose lease lapsed this long ago was not resumed by any worker's sweep.
LEASE_GRACE = timedelta(minutes=2)
#: Seed 004: webhook failures above 5 % warn, above 10 % are critical (over 24 hours).
WEBHOOK_FAILURE_WARNING, WEBHOOK_FAILURE_CRITICAL = 0.05, 0.10
WEBHOOK_WINDOW = timedelta(hours=24)
#: The oldest event not yet applied: older than this warns, older than the second is critical.
BACKLOG_WARNING, BACKLOG_CRITICAL = timedelta(minutes=5), timedelta(minutes=30)
SHOWN = 5


def ago(moment: datetime | None, now: datetime) -> str:
    """``3 min``, ``2.5 h``…: how long ago ``moment`` was."""
    if moment is None:
        return "never"
    seconds = max(0.0, (now - moment).total_seconds())
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} days"


def _unapplied_webhooks(context: DoctorContext) -> tuple[int, datetime | None]:
    """How many stored events wait to be applied, and when the oldest arrived."""
    waiting = BillingWebhook.status.in_((WebhookStatus.RECEIVED, WebhookStatus.PROCESSING))
    with context.sessions("billing")() as session:
        row = session.execute(
            select(func.count(), func.min(BillingWebhook.received_at)).where(waiting)
        ).one()
    return int(row[0] or 0), row[1]


def worker(context: DoctorContext) -> Iterator[Check]:
    """A worker reported itself within the last few beats.

    None alive is critical when something needs one: queued or running operations, stored
    webhook events to apply, or backups the scheduler should take (an enabled policy with
    ``TENANTRY_BACKUP_SCHEDULER`` on, the default); otherwise a warning (nothing is lost yet).
    """
    now = utcnow()
    with context.sessions()() as session:
        alive = workers.alive(session)
        if alive:
            shown = ", ".join(f"{w.hostname}:{w.pid}" for w in alive[:SHOWN])
            newest = max(w.last_seen_at for w in alive)
            yield ok("worker", f"{len(alive)} alive ({shown}); last beat {ago(newest, now)} ago")
            return
        last_seen = session.scalar(select(func.max(Worker.last_seen_at)))
        queued = int(
            session.scalar(select(func.count()).where(Operation.status.in_(ACTIVE_STATUSES))) or 0
        )
        scheduled = context.settings.backup_scheduler and any(
            policy_for(session, scope).enabled for scope in ("master", "billing", "tenant")
        )
    try:
        webhooks, _ = _unapplied_webhooks(context)
    except Skipped:
        webhooks = 0
    needs = [
        *([f"{queued} operation(s) queued or running"] if queued else []),
        *([f"{webhooks} webhook event(s) to apply"] if webhooks else []),
        *(["scheduled backups"] if scheduled else []),
    ]
    # A worker that stopped cleanly removes its row: then none is registered at all.
    seen = f"the last one beat {ago(last_seen, now)} ago" if last_seen else "none registered"
    if needs:
        yield Check(
            "worker",
            Status.CRITICAL,
            f"no worker alive ({seen}); waiting for one: {', '.join(needs)}",
            START_WORKER,
        )
    else:
        yield Check(
            "worker", Status.WARNING, f"no worker alive ({seen}); nothing waits yet", START_WORKER
        )


def waiting_work(context: DoctorContext) -> Iterator[Check]:
    """Operations queued too long, or running with a lease that lapsed (their holder died)."""
    now = utcnow()
    late = or_(
        and_(
            Operation.status == OperationStatus.QUEUED, Operation.created_at < now - QUEUED_WARNING
        ),
        and_(Operation.status.in_(HELD_STATUSES), lease_lapsed(now - LEASE_GRACE)),
    )
    with context.sessions()() as session:
        rows = session.execute(
            select(
                Operation.id,
                Operation.kind,
                Operation.status,
                Operation.target,
                Operation.created_at,
                Operation.lease_expires_at,
            )
            .where(late)
            .order_by(Operation.created_at)
            .limit(100)
        ).all()
    if not rows:
        yield ok("waiting work", "no operation waits too long")
        return
    critical = False
    parts = []
    for r in rows:
        if r.status == OperationStatus.QUEUED:
            critical = critical or r.created_at < now - QUEUED_CRITICAL
            parts.append(f"{r.kind} {r.id} ({r.target or '-'}) queued {ago(r.created_at, now)}")
        else:
            critical = True
            lapsed = ago(r.lease_expires_at, now) if r.lease_expires_at else "no lease"
            parts.append(f"{r.kind} {r.id} ({r.target or '-'}) {r.status}, lease lapsed {lapsed}")
    oldest = rows[0]
    more = f" and {len(rows) - SHOWN} more" if len(rows) > SHOWN else ""
    yield Check(
        "waiting work",
        Status.CRITICAL if critical else Status.WARNING,
        f"{len(rows)} operation(s) wait too long: {'; '.join(parts[:SHOWN])}{more}",
        f"{START_WORKER} resumes them (its sweep runs every minute); see tenantry ops show "
        f"{oldest.id}, or tenantry ops cancel {oldest.id}",
        str(oldest.id),
    )


def webhook_failures(context: DoctorContext) -> Iterator[Check]:
    """The share of webhook events received in 24 h that failed (seed 004: 5 % / 10 %)."""
    since = utcnow() - WEBHOOK_WINDOW
    with context.sessions("billing")() as session:
        rows = session.execute(
            select(BillingWebhook.status, func.count())
            .where(BillingWebhook.received_at >= since)
            .group_by(BillingWebhook.status)
        ).all()
    counts = {str(status): int(n) for status, n in rows}
    total = sum(counts.values())
    failed = counts.get(WebhookStatus.FAILED, 0)
    share = failed / total if total else 0.0
    evidence = f"{failed} of {total} webhook event(s) failed in the last 24 h ({share:.1%})"
    if share > WEBHOOK_FAILURE_CRITICAL or share > WEBHOOK_FAILURE_WARNING:
        yield Check(
            "webhook failures",
            Status.CRITICAL if share > WEBHOOK_FAILURE_CRITICAL else Status.WARNING,
            evidence + " (seed 004: > 5 % warning, > 10 % critical)",
            "tenantry billing webhooks list --status failed (read last_error: signing secrets, "
            "processor status), fix the cause, then tenantry billing webhooks replay --failed",
        )
    else:
        yield ok("webhook failures", evidence)


def webhook_backlog(context: DoctorContext) -> Iterator[Check]:
    """The oldest stored webhook event not yet applied."""
    count, oldest = _unapplied_webhooks(context)
    now = utcnow()
    if not count or oldest is None:
        yield ok("webhook backlog", "no event waits to be applied")
        return
    age = now - oldest
    evidence = f"{count} event(s) wait to be applied; the oldest arrived {ago(oldest, now)} ago"
    if age > BACKLOG_WARNING:
        yield Check(
            "webhook backlog",
            Status.CRITICAL if age > BACKLOG_CRITICAL else Status.WARNING,
            evidence,
            f"{START_WORKER} applies them; more workers if one cannot keep up",
        )
    else:
        yield ok("webhook backlog", evidence)


def queue(context: DoctorContext) -> Iterator[Check]:
    """The job queue answers (``queue_depth``, given by the adapter that opened the queue)."""
    if context.queue_depth is None:
        return
    try:
        waiting = context.queue_depth()
    except Exception as exc:  # the queue's own errors vary by backend (Redis, SQLite)
        yield Check(
            "job queue",
            Status.CRITICAL,
            f"the job queue does not answer: {describe(exc)}",
            "Check TENANTRY_QUEUE_URL and that Redis runs (or unset it for the embedded queue).",
        )
        return
    yield ok("job queue", f"answers; {waiting} message(s) waiting")
