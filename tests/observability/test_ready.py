"""``GET /ready``: 200 only when master, billing and the queue answer; 503 naming what does not."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient

from tenantry.api.app import create_app
from tenantry.db.admin import drop_database
from tenantry.jobs.queue import Queue
from tenantry.operations.dispatch import Dispatcher
from tenantry.runtime import Platform
from tenantry.settings import Settings, load_settings
from tests.helpers import free_port


@contextmanager
def _client(settings: Settings, dispatcher: Dispatcher) -> Iterator[TestClient]:
    with TestClient(create_app(settings, dispatcher=dispatcher)) as client:
        yield client
    dispatcher.close()


def test_ready_until_the_master_database_is_gone(backend_platform: Platform) -> None:
    settings = backend_platform.settings
    with _client(settings, Queue(settings)) as client:
        answer = client.get("/ready")  # no key needed, as /health
        assert answer.status_code == 200, answer.text
        assert answer.json() == {
            "status": "ready",
            "checks": {"master": {"ok": True}, "billing": {"ok": True}, "queue": {"ok": True}},
        }
        client.app.state.platform.master_engine.dispose()  # type: ignore[attr-defined]
        backend_platform.master_engine.dispose()
        assert drop_database(settings.master_url)

        answer = client.get("/ready")
        assert answer.status_code == 503
        assert answer.headers["Retry-After"]
        error = answer.json()["error"]
        assert error["message"].startswith("not ready: master: the master database ")
        assert "billing" not in error["message"]
        assert "queue" not in error["message"]
        assert "DATABASE_URL" in error["hint"]
        # Neither the URL nor the database's name is shown.
        assert (settings.master_url.database or "") not in answer.text
        assert "://" not in answer.text
        # Liveness is another question: the process still answers.
        assert client.get("/health").status_code == 200


def test_not_ready_when_the_queue_does_not_answer(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = free_port()  # nothing listens there
    monkeypatch.setenv("TENANTRY_QUEUE_URL", f"redis://127.0.0.1:{closed}/0")
    unreachable = load_settings()
    with _client(unreachable, Queue(unreachable)) as client:
        answer = client.get("/ready")
    assert answer.status_code == 503
    error = answer.json()["error"]
    assert error["message"].startswith(
        f"not ready: queue: the job queue (Redis at 127.0.0.1:{closed})"
    )
    assert "master" not in error["message"]
    assert "billing" not in error["message"]
    assert "TENANTRY_QUEUE_URL" in error["hint"]
    assert "redis://" not in answer.text


def test_a_queue_that_accepts_but_never_answers_is_not_ready_within_seconds(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as silent:  # the kernel completes the handshake; nothing ever replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        monkeypatch.setenv("TENANTRY_QUEUE_URL", f"redis://127.0.0.1:{port}/0")
        hung = load_settings()
        with _client(hung, Queue(hung)) as client:
            started = time.monotonic()
            answer = client.get("/ready")
            took = time.monotonic() - started
    assert answer.status_code == 503
    assert "queue" in answer.json()["error"]["message"]
    assert took < 15  # redis-py gives up reading after its 5 s socket timeout


def test_ready_with_a_redis_queue(
    settings: Settings, redis_queue: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in redis_queue.items():
        monkeypatch.setenv(name, value)
    on_redis = load_settings()
    with _client(on_redis, Queue(on_redis)) as client:
        answer = client.get("/ready")
    assert answer.status_code == 200, answer.text
