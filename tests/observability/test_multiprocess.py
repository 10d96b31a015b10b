"""Under `tenantry up`, one scrape of the API counts the work of every API process and of the
worker; `tenantry worker --metrics-port` serves a worker's own metrics."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.helpers import free_port, stop_process, wait_for_output, wait_until_healthy
from tests.observability.scrape import Scrape
from tests.stripe_events import signed, subscription_created

TENANTRY = (sys.executable, "-m", "tenantry")
SECRET = "whsec_" + "m3tr1cs" * 4


def _signed_event() -> tuple[bytes, dict[str, str]]:
    # About a customer billing does not know: stored, then applied as "ignored".
    event = subscription_created("nobody", subscription="sub_mp", customer="cus_mp", plan_code=None)
    return signed(event, SECRET)


def _scrape(base: str, key: str) -> Scrape:
    answer = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert answer.status_code == 200, answer.text
    return Scrape(answer.text)


def _eventually(base: str, key: str, name: str, want: float, **labels: str) -> Scrape:
    deadline = time.monotonic() + 40
    while True:
        found = _scrape(base, key)
        if found.value(name, **labels) == want or time.monotonic() > deadline:
            assert found.value(name, **labels) == want, found.text
            return found
        time.sleep(0.3)


def test_one_scrape_sums_the_api_processes_and_the_worker(cli: Any, tmp_path: Path) -> None:
    assert cli("init").exit_code == 0
    added = cli("billing", "secrets", "add", "acme", "--processor", "stripe", "--secret", SECRET)
    assert added.exit_code == 0, added.output
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    out = tmp_path / "up.log"
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    with out.open("wb") as log:
        up = subprocess.Popen(
            [*TENANTRY, "up", "--port", str(port), "--workers", "1", "--api-workers", "2"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        try:
            wait_until_healthy(base, up, out, seconds=60)
            text_out = wait_for_output(out, "admin API key (shown once)", up, 10)
            key = next(
                line.rsplit(" ", 1)[1]
                for line in text_out.splitlines()
                if "admin API key (shown once)" in line
            )
            metrics_dir = tmp_path / "data" / "metrics"
            assert metrics_dir.is_dir()

            body, headers = _signed_event()
            stored = httpx.post(f"{base}/webhooks/stripe/acme", content=body, headers=headers)
            assert stored.status_code == 200, stored.text
            for _ in range(12):
                assert httpx.get(f"{base}/health").status_code == 200

            # Stored by an API process, applied by the worker: one scrape sees both.
            found = _eventually(
                base,
                key,
                "tenantry_webhooks_processed_total",
                1,
                processor="stripe",
                status="ignored",
            )
            assert found.value("tenantry_webhooks_received_total", app="acme") == 1
            health = found.value("tenantry_http_requests_total", route="/health", status="200")
            assert health >= 12  # every request, whichever API process answered it
            assert found.value("tenantry_workers_alive") >= 1
            assert found.value("tenantry_webhook_backlog") == 0
            # Counted apart by each process: the API processes and the worker.
            pids = {p.stem.rsplit("_", 1)[1] for p in metrics_dir.glob("*.db")}
            assert len(pids) >= 3, sorted(p.name for p in metrics_dir.glob("*.db"))
            assert found.value("tenantry_db_query_duration_seconds_count", role="billing") > 0

            up.send_signal(signal.SIGTERM)
            assert up.wait(timeout=30) == 0
        finally:
            stop_process(up)
    # Its files went with the processes.
    assert not list(metrics_dir.glob("*.db"))


def test_a_worker_serves_its_own_metrics(cli: Any, tmp_path: Path) -> None:
    assert cli("init").exit_code == 0
    port = free_port()
    out = tmp_path / "worker.log"
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    with out.open("wb") as log:
        worker = subprocess.Popen(
            [*TENANTRY, "worker", "--workers", "1", "--metrics-port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        try:
            wait_for_output(out, "tenantry worker:", worker, 60)
            deadline = time.monotonic() + 30
            while True:
                try:
                    found = Scrape(httpx.get(f"http://127.0.0.1:{port}/metrics").text)
                except httpx.TransportError:
                    found = Scrape("")
                if found.value("tenantry_workers_alive") >= 1 or time.monotonic() > deadline:
                    break
                time.sleep(0.3)
            assert found.value("tenantry_workers_alive") == 1, found.text
            assert found.value("tenantry_info") == 1
            assert found.has("tenantry_queue_depth")
            assert found.value("tenantry_db_query_duration_seconds_count", role="master") > 0
            busy = cli("worker", "--metrics-port", str(port))
            assert busy.exit_code != 0
            assert f"cannot serve metrics on 127.0.0.1:{port}" in busy.output
        finally:
            stop_process(worker)
