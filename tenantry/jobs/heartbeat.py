"""A worker's heartbeat: a thread that tells master, every few seconds, that it runs."""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid

from sqlalchemy.orm import Session, sessionmaker

from tenantry.db.types import utcnow
from tenantry.services import workers

log = logging.getLogger("tenantry.jobs")


class Heartbeat:
    """Beats for one worker process from :meth:`start` until :meth:`stop`."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions
        self.worker_id = uuid.uuid4()
        self.hostname = socket.gethostname()
        self.pid = os.getpid()
        self.started_at = utcnow()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tenantry-heartbeat", daemon=True)

    def beat(self) -> None:
        """Record one beat now."""
        with self.sessions.begin() as session:
            workers.beat(
                session,
                self.worker_id,
                hostname=self.hostname,
                pid=self.pid,
                started_at=self.started_at,
            )

    def start(self) -> None:
        """Beat once now (a waiting command sees the worker at once), then every few seconds."""
        self.beat()
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(workers.BEAT_EVERY.total_seconds()):
            try:
                self.beat()
            except Exception as exc:  # a master hiccup must not stop the worker; next beat
                log.warning("worker heartbeat not recorded: %s", type(exc).__name__)

    def stop(self) -> None:
        """Stop beating and tell master this worker is gone."""
        self._stop.set()
        self._thread.join(timeout=10)
        try:
            with self.sessions.begin() as session:
                workers.stopped(session, self.worker_id)
        except Exception as exc:  # then it simply stops being seen as alive
            log.warning("worker stop not recorded: %s", type(exc).__name__)
