"""Benches that measure tenantry as users run it: ``tenantry up`` on a free port, on a fresh
installation in a temp data dir, stopped (its worker too) whatever happens."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx
from benchkit import on_cpus

HEALTH_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
#: Variables that would point the server at another installation.
_TENANTRY_VARS = ("DATABASE_URL", "DATABASE_URL_BILLING")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def environment(data_dir: Path, billing_url: str | None) -> dict[str, str]:
    """This process's environment pointed at a fresh installation in ``data_dir``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TENANTRY_") and k not in _TENANTRY_VARS
    }
    env["TENANTRY_DATA_DIR"] = str(data_dir)
    if billing_url is not None:
        env["DATABASE_URL_BILLING"] = billing_url
    return env


def tenantry(env: dict[str, str], *args: str, timeout: float = 180) -> str:
    """Run a tenantry command to completion (at most ``timeout`` seconds); its standard
    output. On failure, what it said (never argv: it may hold a secret)."""
    done = subprocess.run(
        [sys.executable, "-m", "tenantry", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"`tenantry {args[0]} {args[1] if len(args) > 1 else ''}` exited "
            f"{done.returncode}: {done.stderr.strip() or done.stdout.strip()}"
        )
    return done.stdout


def log_tail(log: Path, lines: int = 25) -> str:
    """The end of the server's log, without the admin key line `tenantry up` prints."""
    try:
        text = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(line for line in text[-lines:] if "API key" not in line)


@dataclass
class Server:
    """``tenantry up`` in its own process group (its worker subprocess joins the group)."""

    proc: subprocess.Popen[bytes]
    base_url: str
    log: Path

    def wait_ready(self, timeout: float = HEALTH_TIMEOUT_S) -> None:
        """Wait until ``/health`` answers and the worker said it started."""
        deadline = time.monotonic() + timeout
        healthy = False
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"the server exited {self.proc.returncode}:\n{log_tail(self.log)}"
                )
            if not healthy:
                with suppress(httpx.HTTPError):
                    healthy = httpx.get(f"{self.base_url}/health", timeout=2).status_code == 200
            if healthy and "tenantry worker:" in self.log.read_text(errors="replace"):
                return
            time.sleep(0.2)
        raise RuntimeError(f"the server was not ready in {timeout:.0f} s:\n{log_tail(self.log)}")

    def stop(self) -> None:
        """SIGTERM (``up`` stops its worker), then SIGKILL whatever of the group is left."""
        pgid = self.proc.pid
        if self.proc.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
                self.proc.wait()
        # The worker outlives `up` only if `up` died without stopping it.
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while _group_alive(pgid):
            if time.monotonic() > deadline:
                with suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
                break
            time.sleep(0.1)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def running_server(
    env: dict[str, str],
    log: Path,
    workers: int | None = 1,
    api_workers: int = 1,
    cpus: frozenset[int] | None = None,
) -> Iterator[Server]:
    """``tenantry up`` on a free port, ready; stopped on exit whatever happened. ``workers``:
    its worker's threads (None: ``up``'s default). With ``cpus``, it and its worker run on
    those CPUs only (``benchkit.CpuSplit``)."""
    port = _free_port()
    threads = [] if workers is None else ["--workers", str(workers)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tenantry",
                "up",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                *threads,
                "--api-workers",
                str(api_workers),
                "--no-access-log",
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=on_cpus(cpus),
        )
    server = Server(proc, f"http://127.0.0.1:{port}", log)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
