"""At most N open connections per database server in one process, across all its pools.

The tenant router opens one small pool per store; with thousands of stores on one server,
those pools together could hold far more connections than the server allows. A
:class:`ConnectionBudget` counts the DBAPI connections open to each server (host and port)
and makes an engine's pool wait for a free slot before it opens another. While it waits, it
asks ``reclaim`` (the router) to close idle pooled connections to that server; when none
frees up within the wait, the checkout fails with :class:`ConnectionsExhausted` (HTTP 503).

A slot is taken just before the driver connects and given back once SQLAlchemy has closed the
connection (pool ``close``/``close_detached`` events, which also cover invalidation), or,
should neither fire, when the connection object is garbage collected. Those events fire just
*before* the driver's close: a slot given back there let the next connection open while the
old one was still open, one over the bound for a moment. So the slot is kept until the driver
says the connection is closed.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, event
from sqlalchemy.engine import URL

from tenantry.errors import ConnectionsExhausted

if TYPE_CHECKING:
    from tenantry.settings import Settings

#: How long a checkout waits for a slot on a full server before the request fails.
DEFAULT_WAIT_SECONDS = 10.0
_POLL_SECONDS = 0.05
#: A connection whose close never says it finished gives its slot back after this anyway, so a
#: driver that fails mid-close cannot keep a server's budget short for good.
_CLOSE_GRACE_SECONDS = 1.0


def server_key(url: URL) -> str:
    """The server a URL's connections count against (``backend://host:port``)."""
    return f"{url.get_backend_name()}://{url.host or 'localhost'}:{url.port or ''}"


class _Slot:
    """One open connection's claim on its server's budget; released once."""

    __slots__ = ("__weakref__", "_budget", "_key", "_released")

    def __init__(self, budget: ConnectionBudget, key: str) -> None:
        self._budget = budget
        self._key = key
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._budget._give_back(self._key)


def _driver_closed(dbapi_conn: Any) -> bool:
    """Whether the driver's connection is closed (psycopg ``closed``, PyMySQL ``open``); a
    driver that says neither counts as closed, as the pool's event said it would be."""
    closed = getattr(dbapi_conn, "closed", None)
    if isinstance(closed, bool):
        return closed
    is_open = getattr(dbapi_conn, "open", None)
    if isinstance(is_open, bool):
        return not is_open
    return True


class ConnectionBudget:
    """Counts open connections per server and blocks openings beyond ``limit``."""

    def __init__(
        self,
        limit: int,
        *,
        wait_seconds: float = DEFAULT_WAIT_SECONDS,
        reclaim: Callable[[str], int] | None = None,
    ) -> None:
        if limit < 1:
            raise ValueError("a connection budget needs at least one connection per server")
        self.limit = limit
        self._wait = wait_seconds
        self._reclaim = reclaim
        self._open: dict[str, int] = {}
        self._peak: dict[str, int] = {}
        #: Slots of connections SQLAlchemy is closing, given back once the driver has closed.
        self._closing: list[tuple[_Slot, Any, float]] = []
        self._cond = threading.Condition()

    def set_reclaim(self, reclaim: Callable[[str], int]) -> None:
        """Who closes idle connections to a server when its budget is full (the router)."""
        self._reclaim = reclaim

    def open_now(self, key: str) -> int:
        """Connections this process has open to server ``key``."""
        self._sweep()
        with self._cond:
            return self._open.get(key, 0)

    def peak(self, key: str) -> int:
        """The most connections open to server ``key`` at once so far."""
        with self._cond:
            return self._peak.get(key, 0)

    def bind(self, engine: Engine) -> Engine:
        """Make ``engine`` take a slot of its server before each connection it opens.

        Call it on a fresh engine, before its first connection.
        """
        key = server_key(engine.url)
        slots: dict[int, _Slot] = {}
        lock = threading.Lock()

        @event.listens_for(engine, "do_connect")
        def _take_slot(dialect: Any, record: Any, cargs: Any, cparams: Any) -> Any:
            slot = self._acquire(key)
            try:
                dbapi_conn = dialect.connect(*cargs, **cparams)
            except BaseException:
                slot.release()
                raise
            with lock:
                slots[id(dbapi_conn)] = slot
            # Should SQLAlchemy never say it closed it, the garbage collector will.
            with contextlib.suppress(TypeError):  # a driver whose connections take no weakref
                weakref.finalize(dbapi_conn, slot.release)
            return dbapi_conn

        def _closed(dbapi_conn: Any, *_: Any) -> None:
            with lock:
                slot = slots.pop(id(dbapi_conn), None)
            if slot is not None:
                self._release_when_closed(slot, dbapi_conn)

        event.listen(engine.pool, "close", _closed)
        event.listen(engine.pool, "close_detached", _closed)
        return engine

    # ------------------------------------------------------------------ internals

    def _release_when_closed(self, slot: _Slot, dbapi_conn: Any) -> None:
        if _driver_closed(dbapi_conn):
            slot.release()
            return
        with self._cond:
            self._closing.append((slot, dbapi_conn, time.monotonic() + _CLOSE_GRACE_SECONDS))
            # The close runs right after the event that got here: whoever waits looks again.
            self._cond.notify_all()

    def _sweep(self) -> None:
        """Give back the slots of connections the driver has closed since their event."""
        with self._cond:
            if not self._closing:
                return
            now = time.monotonic()
            done: list[_Slot] = []
            still: list[tuple[_Slot, Any, float]] = []
            for slot, conn, give_up_at in self._closing:
                if _driver_closed(conn) or now >= give_up_at:
                    done.append(slot)
                else:
                    still.append((slot, conn, give_up_at))
            self._closing = still
        for slot in done:
            slot.release()

    def _acquire(self, key: str) -> _Slot:
        deadline = time.monotonic() + self._wait
        while True:
            self._sweep()
            with self._cond:
                if self._open.get(key, 0) < self.limit:
                    count = self._open.get(key, 0) + 1
                    self._open[key] = count
                    self._peak[key] = max(self._peak.get(key, 0), count)
                    return _Slot(self, key)
            # Full: close idle pooled connections to this server, then wait for one to go.
            freed = self._reclaim(key) if self._reclaim is not None else 0
            left = deadline - time.monotonic()
            if left <= 0:
                raise ConnectionsExhausted(
                    f"all {self.limit} connections this process may open to {key} are in use "
                    f"(waited {self._wait:g} s for one).",
                    "Retry shortly; if it persists, raise TENANTRY_MAX_CONNECTIONS_PER_SERVER "
                    "(within the server's own max_connections) or put PgBouncer in front of "
                    "the server (tenantry servers set NAME --pooler-url URL).",
                )
            if not freed:
                with self._cond:
                    self._cond.wait(min(left, _POLL_SECONDS))

    def _give_back(self, key: str) -> None:
        with self._cond:
            self._open[key] = max(0, self._open.get(key, 0) - 1)
            self._cond.notify()


def connection_budget(settings: Settings) -> ConnectionBudget | None:
    """The budget ``TENANTRY_MAX_CONNECTIONS_PER_SERVER`` asks for (``None`` when 0: off)."""
    if not settings.max_connections_per_server:
        return None
    return ConnectionBudget(
        settings.max_connections_per_server, wait_seconds=settings.connection_wait_seconds
    )
