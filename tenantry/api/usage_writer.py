"""Group commit for the usage every tenant call writes to master.

Each tenant call, reads too, logs itself in ``api_usage_logs`` and counts in its store's
month. Written one transaction per request, concurrent calls queued on master's single write
lock (on SQLite, sleeping in its busy handler between tries): the write was most of a read's
time. Here the calls waiting at the same moment share one transaction, written by one thread
(one INSERT, one UPDATE per store); each caller returns only once its own call is committed,
so the log and the counts stay exact and durable, and a failed batch raises in every caller
whose call it held.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from tenantry.services.store_data import ApiCall, count_api_calls

#: Calls per transaction; more wait for the next one.
BATCH = 512


@dataclass
class _Waiter:
    call: ApiCall
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class UsageWriter:
    """Writes tenant calls' usage for one process, in shared transactions."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        # Writer sessions: on SQLite the batch queues for master's write lock up front.
        self._sessions = sessions
        self._cond = threading.Condition()
        self._pending: list[_Waiter] = []
        self._closed = False
        self._thread: threading.Thread | None = None

    def record(self, call: ApiCall) -> None:
        """Log and count ``call``; returns once committed (or raises what the commit did)."""
        waiter = _Waiter(call)
        with self._cond:
            if self._closed:
                raise RuntimeError("the usage writer is closed")
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="tenantry-usage", daemon=True
                )
                self._thread.start()
            self._pending.append(waiter)
            self._cond.notify()
        waiter.done.wait()
        if waiter.error is not None:
            raise waiter.error

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending:
                    return  # closed, nothing left
                batch, self._pending = self._pending[:BATCH], self._pending[BATCH:]
            try:
                with self._sessions.begin() as session:
                    count_api_calls(session, [w.call for w in batch])
            except BaseException as exc:  # nothing committed: every caller gets the error
                for waiter in batch:
                    waiter.error = exc
            for waiter in batch:
                waiter.done.set()

    def close(self) -> None:
        """Write what is pending, then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join()
