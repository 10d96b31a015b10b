"""Workers on several hosts: the API on one host, two workers on two others, PostgreSQL and
Redis on a fourth, each its own network namespace and host name, reaching each other only over
a bridge (``tests/netns.py``). One worker host dies in the middle of a provisioning job (every
process SIGKILLed, its link down); the other host's worker finishes that job once its lease
lapses, and every job ends completed once: one database per store, nothing left over."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from cryptography.fernet import Fernet
from sqlalchemy import Engine, select, text

from tenantry.db.engines import make_engine
from tenantry.db.master.models import Operation
from tenantry.db.urls import parse_url
from tests.helpers import wait_for_output, wait_until_healthy
from tests.netns import Lan, lan
from tests.own_postgres import own_cluster, require_binaries, wait_listening
from tests.platform_fixtures import ENV_VARS

STORES = 6
#: Seconds a job's lease runs without renewal; the surviving worker's recovery sweep takes the
#: dead host's job over once it has lapsed.
LEASE_S = 3
#: Seconds between the workers' recovery sweeps (each minute by default).
SWEEP_S = 2


def _tenantry(env: dict[str, str], *args: str) -> str:
    """The CLI from the test's own host, on the shared master."""
    done = subprocess.run(
        [sys.executable, "-m", "tenantry", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _host_env(common: dict[str, str], tmp: Path, host: str) -> dict[str, str]:
    """``host``'s environment: the shared settings and a data dir of its own."""
    data = tmp / host
    data.mkdir()
    return {**common, "TENANTRY_DATA_DIR": str(data)}


def test_a_worker_host_dies_mid_job_and_the_other_host_finishes_every_job_once(
    tmp_path: Path,
) -> None:
    require_binaries("a PostgreSQL of the test's own")
    with lan("db", "api", "w1", "w2") as net:
        db = net.ip("db")
        # No password: it is reachable only on the test's own bridge.
        redis = ["redis-server", "--bind", db, "--port", "6379", "--protected-mode", "no"]
        redis += ["--save", "", "--appendonly", "no"]
        net.start("db", redis, dict(os.environ), tmp_path / "redis.log")
        wait_listening(db, 6379)
        pg_root = Path(tempfile.mkdtemp(prefix="tenantry-hosts-pg-"))
        hba = f"local all all trust\nhost all all {net.subnet}.0/24 trust\n"
        with own_cluster(pg_root, host=db, port=5432, hba=hba, inside=net.inside("db")):
            _run_hosts(net, tmp_path)


def _run_hosts(net: Lan, tmp: Path) -> None:
    db = net.ip("db")
    server = f"postgresql+psycopg://postgres@{db}:5432"
    common = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    common |= {
        "DATABASE_URL": f"{server}/tt_master",
        "DATABASE_URL_BILLING": f"{server}/tt_billing",
        "TENANTRY_SECRET_KEYS": Fernet.generate_key().decode(),
        "TENANTRY_QUEUE_URL": f"redis://{db}:6379/0",
        "TENANTRY_JOB_LEASE_SECONDS": str(LEASE_S),
        "TENANTRY_RECOVERY_SWEEP_SECONDS": str(SWEEP_S),
        "TENANTRY_SPARE_DATABASES": "0",
        "TENANTRY_BACKUP_SCHEDULER": "false",
    }
    here = _host_env(common, tmp, "test")
    _tenantry(here, "init")
    _tenantry(here, "servers", "add", "main", "--url", f"{server}/postgres")

    api_log = tmp / "api.log"
    api = net.start(
        "api",
        [sys.executable, "-m", "tenantry", "up", "--no-worker", "--host", net.ip("api")],
        _host_env(common, tmp, "api"),
        api_log,
    )
    base = f"http://{net.ip('api')}:8000"
    shown = wait_for_output(api_log, "admin API key (shown once): ", api, 60)
    key = shown.split("admin API key (shown once): ", 1)[1].split()[0]
    wait_until_healthy(base, api, api_log, 60)

    # The first worker pauses a second in each job's last step: a window to pull its plug in.
    worker = [sys.executable, "-m", "tenantry", "worker", "--workers", "1"]
    w1_env = _host_env(common, tmp, "w1") | {"TENANTRY_FAILPOINTS": "provision.seed=sleep:1"}
    w1 = net.start("w1", worker, w1_env, tmp / "w1.log")
    w2 = net.start("w2", worker, _host_env(common, tmp, "w2"), tmp / "w2.log")
    # Both serve the queue before a job is queued: a job takes 0.15 s, and the host that came
    # up first once took all of them before the other started.
    for name, proc in (("w1", w1), ("w2", w2)):
        wait_for_output(tmp / f"{name}.log", "Huey consumer started", proc, 60)

    master = make_engine(parse_url(f"{server}/tt_master"), pooled=False)
    try:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as http:
            jobs = []
            for n in range(STORES):
                slug = f"far-{n}-{uuid.uuid4().hex[:6]}"
                made = http.post("/stores", json={"slug": slug, "name": slug})
                assert made.status_code == 201, made.text
                asked = http.post(f"/stores/{slug}/provision", json={"server": "main"})
                assert asked.status_code == 202, asked.text
                jobs.append(asked.json()["job_id"])

            doomed = _wait_for_w1_mid_job(master)
            net.pull_the_plug("w1")

            deadline = time.monotonic() + 120  # the lease, then the next sweep
            states: dict[str, dict[str, object]] = {}
            while time.monotonic() < deadline:
                states = {job: http.get(f"/provision/{job}").json() for job in jobs}
                if all(s["status"] == "completed" for s in states.values()):
                    break
                time.sleep(1)
            assert all(s["status"] == "completed" for s in states.values()), (
                states,
                (tmp / "w2.log").read_text()[-3000:],
            )
            attempts = {job: s["attempts"] for job, s in states.items()}
            assert attempts.pop(str(doomed)) == 2  # begun on w1, finished on w2
            assert set(attempts.values()) == {1}
            listed = http.get("/stores", params={"limit": 100}).json()["items"]
            assert sorted(s["status"] for s in listed) == ["active"] * STORES
        with master.connect() as conn:
            names = conn.scalars(
                text("SELECT datname FROM pg_database WHERE datname NOT IN (:a, :b, :c)"),
                {"a": "postgres", "b": "tt_master", "c": "tt_billing"},
            ).all()
        stores_dbs = [n for n in names if not n.startswith(("template", "tenantry_tpl"))]
        assert len(stores_dbs) == STORES, names  # one each: the dead host's half-made one reused
    finally:
        master.dispose()


def _wait_for_w1_mid_job(master: Engine) -> uuid.UUID:
    """The job the first worker host is in the middle of (its last step)."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        with master.connect() as conn:
            found = conn.scalar(
                select(Operation.id).where(
                    Operation.status == "running",
                    Operation.step == "seed",
                    # Claims are named host/pid-namespace:pid:random (kit.holder_id).
                    Operation.lease_holder.like("%tt-w1/%"),
                )
            )
        if found is not None:
            return found
        time.sleep(0.05)
    raise AssertionError("the first worker host never took a job")
