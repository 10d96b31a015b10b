"""Who a request acts as, and the guard that keeps a read-only principal from changing anything.

An adapter records the request's :class:`Principal` (a platform user or an API key) with
:func:`begin_request` / :func:`set_principal` (the API) or :func:`acting_as` (a CLI command,
a test). While the principal is read-only (a viewer, a read-only key), every statement that
would change a database — master, billing or a tenant's, through a session or straight on a
connection — is refused with :class:`~tenantry.errors.Forbidden` before it reaches the server.
The only writes let through are the bookkeeping that authenticating and serving a request
does itself (:data:`BOOKKEEPING`): audit entries, the usage log and counters, a key's last
use, a user's last login and login sessions.

The guard is one ``before_cursor_execute`` listener on every :class:`~sqlalchemy.Engine` and
one ``before_flush`` listener on every :class:`~sqlalchemy.orm.Session` (which refuses an ORM
change before any SQL is sent), installed when this module is imported.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, event, inspect
from sqlalchemy.engine.interfaces import DBAPICursor, ExecutionContext
from sqlalchemy.orm import Session, UOWTransaction
from sqlalchemy.sql.dml import UpdateBase

from tenantry.errors import Forbidden

#: Tables (and, for some, the only columns) a read-only principal's requests still write:
#: what authenticating and serving a request records by itself. ``None``: any column.
BOOKKEEPING: dict[str, frozenset[str] | None] = {
    "audit_logs": None,
    "billing_audit_logs": None,
    "api_usage_logs": None,
    "user_sessions": None,
    "login_failures": None,
    "api_keys": frozenset({"last_used_at", "updated_at"}),
    "users": frozenset({"last_login_at", "updated_at"}),
    "stores": frozenset({"api_calls_month", "last_activity_at", "updated_at"}),
}

#: Statements that change nothing (transaction control, session settings, reads).
_HARMLESS = re.compile(
    r"^\s*(select|show|set|pragma|begin|start\s+transaction|savepoint|release|rollback|commit"
    r"|describe|values|reset|discard|lock\s+tables|unlock\s+tables|xa\s)",
    re.IGNORECASE,
)
#: A query with common table expressions only reads unless it holds a statement that writes.
_WITH = re.compile(r"^\s*with\b", re.IGNORECASE)
_CHANGES = re.compile(r"\b(insert|update|delete|merge|create|drop|alter|truncate)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: a platform user (by session) or an API key.

    Carries what the routes read of a key (``scopes``, ``store_id``, ``app_id``,
    ``prefix``), so a user's session authenticates the API as an admin key would: an owner or
    operator as an admin key, a viewer as a read-only admin key.
    """

    kind: str  # "user" or "key"
    name: str  # the user's email, the key's prefix
    role: str  # a user's role (owner, operator, viewer); a key's scope
    read_only: bool
    scopes: tuple[str, ...] = ()
    store_id: uuid.UUID | None = None
    app_id: str | None = None
    id: uuid.UUID | None = None  # the user's or the key's row id

    @property
    def prefix(self) -> str:
        """A key's prefix; for a user, the email (what identifies the principal)."""
        return self.name

    @property
    def actor(self) -> str:
        """The principal as the audit log names it: ``user:<email>`` or ``key:<prefix>``
        (cut to the audit log's 128 characters; an email may have 255)."""
        return f"{self.kind}:{self.name}"[:128]

    @property
    def is_admin(self) -> bool:
        """Whether it may act on (or, read-only, read) the whole platform."""
        return "admin" in self.scopes

    def describe(self) -> str:
        """How an error names the principal."""
        if self.kind == "user":
            return f"user {self.name} ({self.role})"
        return f"API key {self.name}"


@dataclass
class _Holder:
    """A request's principal, filled in once it is known. Mutable and shared on purpose:
    FastAPI runs sync dependencies and routes in threads with *copies* of the context, so a
    value set in one of them would be lost; a holder set by the middleware is seen by all."""

    principal: Principal | None = None


_current: ContextVar[_Holder | None] = ContextVar("tenantry_principal", default=None)


def begin_request() -> Token[_Holder | None]:
    """Start a request's (empty) holder in the current context; returns the reset token."""
    return _current.set(_Holder())


def end_request(token: Token[_Holder | None]) -> None:
    """Forget the request's holder (the token :func:`begin_request` returned)."""
    _current.reset(token)


def set_principal(principal: Principal) -> None:
    """Record the principal of the current request (in its holder, or a new one)."""
    holder = _current.get()
    if holder is None:
        _current.set(_Holder(principal))
    else:
        holder.principal = principal


def current() -> Principal | None:
    """The principal the current code acts for, if an adapter recorded one."""
    holder = _current.get()
    return holder.principal if holder is not None else None


@contextmanager
def acting_as(principal: Principal | None) -> Iterator[None]:
    """Run the block as ``principal`` (``None``: nobody in particular, no restriction)."""
    token = _current.set(_Holder(principal))
    try:
        yield
    finally:
        _current.reset(token)


def _read_only() -> Principal | None:
    principal = current()
    return principal if principal is not None and principal.read_only else None


def refusal(principal: Principal, what: str = "change anything") -> Forbidden:
    """The error a read-only principal gets for trying to ``what``."""
    role = "viewer" if principal.kind == "user" else "read-only key"
    return Forbidden(
        f"{principal.describe()} is read-only ({role}) and cannot {what}.",
        "Ask an operator (or use an API key that is not read-only).",
    )


def ensure_may_write(what: str = "change anything") -> None:
    """Refuse (Forbidden) when the current principal is read-only; call it before starting
    work that does not go through a database session (queues, files, servers)."""
    principal = _read_only()
    if principal is not None:
        raise refusal(principal, what)


def _allowed(table: str | None, columns: set[str] | None) -> bool:
    if table is None or table not in BOOKKEEPING:
        return False
    allowed = BOOKKEEPING[table]
    return allowed is None or (columns is not None and columns <= allowed)


def _before_flush(session: Session, flush_context: UOWTransaction, instances: Any) -> None:
    principal = _read_only()
    if principal is None:
        return
    for obj in [*session.new, *session.deleted]:
        table = inspect(obj).mapper.persist_selectable
        if not _allowed(getattr(table, "name", None), None):
            raise refusal(principal)
    for obj in session.dirty:
        state = inspect(obj)
        changed = {a.key for a in state.attrs if a.history.has_changes()}
        if not changed:
            continue
        table = state.mapper.persist_selectable
        columns = {
            col.name
            for key in changed
            for col in getattr(state.mapper.attrs[key], "columns", ())
            if hasattr(col, "name")
        }
        if not _allowed(getattr(table, "name", None), columns):
            raise refusal(principal)


_SET_CLAUSE = re.compile(r"\bSET\b(.*?)(?:\bWHERE\b|\bRETURNING\b|$)", re.IGNORECASE | re.DOTALL)
_ASSIGNED = re.compile(r"(?:^|,)\s*[`\"\[]?(\w+)[`\"\]]?\s*=")


def _dml_target(context: ExecutionContext, sql: str) -> tuple[str | None, set[str] | None]:
    """The table an INSERT/UPDATE/DELETE compiled from a SQLAlchemy statement writes, and the
    columns an UPDATE sets (``None`` for an INSERT or DELETE: the whole row). Text SQL has no
    table here: it is refused unless it changes nothing."""
    statement = getattr(getattr(context, "compiled", None), "statement", None)
    if not isinstance(statement, UpdateBase):
        return None, None
    table = getattr(getattr(statement, "table", None), "name", None)
    if not getattr(context, "isupdate", False):
        return table, None
    # The SET clause as sent: an ORM flush's UPDATE carries its columns only as parameters.
    found = _SET_CLAUSE.search(sql)
    return table, set(_ASSIGNED.findall(found.group(1))) if found else None


def _before_cursor_execute(
    conn: Any,
    cursor: DBAPICursor,
    statement: str,
    parameters: Any,
    context: ExecutionContext | None,
    executemany: bool,
) -> None:
    principal = _read_only()
    if principal is None or _HARMLESS.match(statement):
        return
    if _WITH.match(statement) and not _CHANGES.search(statement):
        return  # a query with common table expressions that only reads
    if context is not None:
        table, columns = _dml_target(context, statement)
        if _allowed(table, columns):
            return
    raise refusal(principal)


def install() -> None:
    """Install the guard on every engine and session (idempotent)."""
    if not event.contains(Engine, "before_cursor_execute", _before_cursor_execute):
        event.listen(Engine, "before_cursor_execute", _before_cursor_execute)
    if not event.contains(Session, "before_flush", _before_flush):
        event.listen(Session, "before_flush", _before_flush)


install()
