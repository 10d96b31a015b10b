"""Sessions on stores' databases that survive the server ending a pooled connection just as a
transaction takes it.

A move's write fence and switch, a restore's swap and a credential rotation end the sessions a
store's database had open (``pg_terminate_backend``), so their clients reconnect with what
changed. The pool's ping at checkout replaces a connection that was ended while it sat idle,
but the ping and the transaction's first statement are two round trips: a session ended
between them fails that statement with a disconnect ("terminating connection due to
administrator command", "server closed the connection unexpectedly"), and a read served all
along would be answered 503.

:class:`TenantSession` sends such a statement again, once, on a new connection, when nothing
can have been lost: it was the first statement of the session's transaction (none was open
before it, so the server rolled back whatever the ended connection held) and no change was
waiting in the session to be flushed with it. A disconnect later in a transaction, or with
pending changes, is raised as before: only the caller knows whether its work can be repeated.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import ORMExecuteState, Session

log = logging.getLogger("tenantry.db")


class TenantSession(Session):
    """A :class:`~sqlalchemy.orm.Session` whose transaction's first statement is sent again,
    once, when the connection it went out on turns out to have been ended by the server."""


@event.listens_for(TenantSession, "do_orm_execute")
def _first_statement_again(state: ORMExecuteState) -> Any:
    session = state.session
    if session.in_transaction() or session.new or session.dirty or session.deleted:
        return None  # run as usual: a failure here may have lost work of this transaction
    try:
        return state.invoke_statement()
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        log.info(
            "a store database connection was ended by its server as a transaction began "
            "(%s); the statement is sent again on a new connection",
            type(exc.orig).__name__,
        )
        session.rollback()  # drops the ended connection; the next statement checks out another
        return state.invoke_statement()
