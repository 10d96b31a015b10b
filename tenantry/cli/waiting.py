"""Waiting for work queued for the workers: never in silence when no worker runs.

Every command that queues a job and follows it (``provision --wait``, ``fleet migrate --queue
--wait``) asks a :class:`WorkerWatch` at each poll. Without an explicit ``--timeout`` it gives
up within a few seconds when no worker has reported itself, saying how to start one; the
queued work stays queued and runs when a worker starts. With ``--timeout`` it says so once and
goes on waiting, since the caller asked to wait for a worker to come.
"""

from __future__ import annotations

import time

from sqlalchemy.orm import Session, sessionmaker

from tenantry.cli.output import err_console
from tenantry.errors import NoWorker
from tenantry.services import workers

#: How long a wait goes on without any live worker before it stops (the job stays queued).
NO_WORKER_GRACE_S = 4.0
#: Worker heartbeats are read at most this often while waiting.
CHECK_EVERY_S = 1.0
#: How long a wait lasts when no --timeout was given and a worker runs.
DEFAULT_TIMEOUT_S = 600.0

TIMEOUT_HELP = (
    "Stop waiting after this many seconds (default 600). Given explicitly, the wait goes on "
    "even while no worker runs yet; without it, the wait stops within 5 s when none runs."
)


class WorkerWatch:
    """Whether anything will ever run the work being waited for."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        what: str,
        patient: bool,
        quiet: bool = False,
        start_hint: str = workers.START_A_WORKER,
    ) -> None:
        """``what`` names the queued work in messages; ``patient`` (an explicit --timeout)
        keeps waiting for a worker to start; ``quiet`` keeps the note off stderr;
        ``start_hint`` says how to get the work run."""
        self.sessions = sessions
        self.start_hint = start_hint
        self.what = what
        self.patient = patient
        self.quiet = quiet
        self._since_none: float | None = None
        self._next_check = 0.0
        self._noted = False

    def check(self) -> None:
        """Raise :class:`NoWorker` once no worker has run for the grace period."""
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + CHECK_EVERY_S
        with self.sessions() as session:
            running = workers.alive_count(session)
        if running:
            self._since_none = None
            return
        if self._since_none is None:
            self._since_none = now
        if now - self._since_none < NO_WORKER_GRACE_S:
            return
        if not self.patient:
            raise NoWorker(
                f"no job worker is running: {self.what} stays queued and runs when one starts.",
                f"{self.start_hint} To wait for a worker, give --timeout SECONDS.",
            )
        if not self._noted and not self.quiet:
            self._noted = True
            err_console.print(
                f"[yellow]no job worker is running yet; waiting for one to take {self.what}.[/] "
                f"[dim]{self.start_hint}[/]"
            )
