"""Reading the audit log: master's ``audit_logs`` and billing's ``billing_audit_logs`` as one
log, newest first, filtered, paged by a cursor or streamed whole."""

from __future__ import annotations

import base64
import heapq
import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.orm import Session

from tenantry.db.billing.models import BillingAuditLog
from tenantry.db.master.models import AuditLog, Store
from tenantry.errors import InvalidInput
from tenantry.services.audit import ACTOR_KINDS, Outcome

_AGO = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
#: Rows read from each table at a time when streaming an export.
_STREAM_BATCH = 500
_HINT_WHEN = "Give a duration such as 7d, 12h or 30m, or an ISO date like 2026-12-01."

Model = type[AuditLog] | type[BillingAuditLog]


def parse_when(text: str, *, option: str, now: datetime | None = None) -> datetime:
    """``7d``/``12h``/``30m``/``2w`` ago, or an ISO 8601 date or time (UTC when no zone)."""
    value = text.strip()
    match = _AGO.match(value)
    if match:
        try:
            return (now or datetime.now(UTC)) - timedelta(
                **{_UNITS[match.group(2)]: int(match.group(1))}
            )
        except OverflowError:
            raise InvalidInput(f"{option} {text!r} reaches before year 1.", _HINT_WHEN) from None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(
            f"{option} {text!r} is neither a duration nor a date.", _HINT_WHEN
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class AuditFilter:
    """Which entries to read; every field that is set must match."""

    since: datetime | None = None
    until: datetime | None = None
    #: ``cli`` / ``key`` / ``user`` (every actor of that kind), or one actor exactly.
    actor: str | None = None
    #: ``store.suspend`` exactly, or ``store.`` / ``store.*`` for a family.
    action: str | None = None
    #: A store's id and slug: entries about it (stores outlive nothing in the log).
    store_id: uuid.UUID | None = None
    store_slug: str | None = None
    outcome: Outcome | None = None

    def __post_init__(self) -> None:
        if self.since and self.until and self.since > self.until:
            raise InvalidInput("since is after until: nothing can match.", "Swap the two times.")


def store_filter(session: Session, ref: str) -> tuple[uuid.UUID | None, str]:
    """The id and slug to filter on for ``--store ref``: a deleted store's entries are still
    found by its slug."""
    store: Store | None
    try:
        wanted = uuid.UUID(ref)
    except ValueError:
        store = session.scalar(select(Store).where(Store.slug == ref))
    else:
        store = session.get(Store, wanted)
        if store is None:  # a deleted store's entries, by its id
            return wanted, str(wanted)
    if store is not None:
        return store.id, store.slug
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", ref):
        raise InvalidInput(f"--store {ref!r} is not a store slug or id.", "See `stores list`.")
    return None, ref


@dataclass(frozen=True)
class Cursor:
    """Where a page ended: the last entry's time and id (entries are newest first)."""

    created_at: datetime
    id: uuid.UUID

    def encode(self) -> str:
        """An opaque token for ``?cursor=``."""
        raw = f"{self.created_at.isoformat()}|{self.id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        """The cursor ``token`` stands for; InvalidInput when it was not made by encode."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
            when, ident = raw.split("|")
            return cls(datetime.fromisoformat(when), uuid.UUID(ident))
        except ValueError:
            raise InvalidInput(
                "cursor is not one this API returned.", "Pass next_cursor from the last page."
            ) from None


def _where(model: Model, flt: AuditFilter, after: Cursor | None) -> Select[Any] | None:
    """The query of ``model`` for ``flt``, newest first; None when it can match nothing."""
    query = select(model)
    if flt.store_id is not None or flt.store_slug is not None:
        if model is BillingAuditLog:
            return None  # billing entries are about apps and customers, never a store
        about = [and_(AuditLog.target_type == "store", AuditLog.target_id == flt.store_slug)]
        if flt.store_id is not None:
            about.append(AuditLog.store_id == flt.store_id)
        query = query.where(or_(*about))
    if flt.since is not None:
        query = query.where(model.created_at >= flt.since)
    if flt.until is not None:
        query = query.where(model.created_at < flt.until)
    if flt.actor is not None:
        if flt.actor in ACTOR_KINDS and ":" not in flt.actor:
            query = query.where(
                or_(model.actor == flt.actor, model.actor.startswith(f"{flt.actor}:"))
            )
        else:
            query = query.where(model.actor == flt.actor)
    if flt.action is not None:
        family = flt.action.removesuffix("*")
        if family.endswith("."):
            query = query.where(model.action.startswith(family, autoescape=True))
        else:
            query = query.where(model.action == flt.action)
    if flt.outcome is not None:
        query = query.where(model.outcome == flt.outcome.value)
    if after is not None:
        query = query.where(
            or_(
                model.created_at < after.created_at,
                and_(model.created_at == after.created_at, model.id < after.id),
            )
        )
    return query.order_by(model.created_at.desc(), model.id.desc())


def document(entry: AuditLog | BillingAuditLog) -> dict[str, Any]:
    """An entry as JSON (the same shape from either table)."""
    if isinstance(entry, AuditLog):
        store_id = str(entry.store_id) if entry.store_id else None
        app_id, log = entry.actor_app, "master"
    else:
        store_id, app_id, log = None, entry.app_id, "billing"
    return {
        "id": str(entry.id),
        "created_at": entry.created_at.isoformat(),
        "log": log,
        "actor": entry.actor,
        "action": entry.action,
        "outcome": entry.outcome,
        "target_type": entry.target_type,
        "target_id": entry.target_id,
        "store_id": store_id,
        "app_id": app_id,
        "details": entry.details,
    }


def _rows(session: Session, query: Select[Any] | None, limit: int | None) -> Iterator[Any]:
    if query is None:
        return iter(())
    if limit is not None:
        return iter(session.scalars(query.limit(limit)).all())
    return iter(session.scalars(query.execution_options(yield_per=_STREAM_BATCH)))


def entries(
    master: Session,
    billing: Session,
    flt: AuditFilter,
    *,
    after: Cursor | None = None,
    limit: int | None = None,
) -> Iterator[AuditLog | BillingAuditLog]:
    """Both logs' entries matching ``flt``, newest first (all of them, streamed, when
    ``limit`` is None)."""
    streams: list[Iterable[AuditLog | BillingAuditLog]] = [
        _rows(master, _where(AuditLog, flt, after), limit),
        _rows(billing, _where(BillingAuditLog, flt, after), limit),
    ]
    merged = heapq.merge(*streams, key=lambda e: (e.created_at, e.id), reverse=True)
    return islice(merged, limit) if limit is not None else merged


def page(
    master: Session, billing: Session, flt: AuditFilter, *, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of entries and the cursor of the next (None on the last page)."""
    after = Cursor.decode(cursor) if cursor else None
    rows = list(entries(master, billing, flt, after=after, limit=limit + 1))
    more = len(rows) > limit
    rows = rows[:limit]
    following = Cursor(rows[-1].created_at, rows[-1].id).encode() if more and rows else None
    return [document(r) for r in rows], following
