"""A PostgreSQL cluster of a test's own: ``initdb`` into a directory (as the ``postgres`` OS
user: initdb refuses root), the test's settings and pg_hba.conf, started with ``pg_ctl`` (inside
a network namespace when asked) and stopped and removed after. Fast and disposable: no fsync,
small buffers. Skipped locally, failed in CI, when the server binaries are missing."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import IN_CI


def _pg_bin() -> Path:
    """The newest installed PostgreSQL's server binaries (Debian keeps one dir per version)."""
    if "TENANTRY_TEST_PG_BIN" in os.environ:
        return Path(os.environ["TENANTRY_TEST_PG_BIN"])
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name or 0))
    return found[-1] if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _pg_bin()
OS_USER = "postgres"


def missing_binaries() -> str | None:
    """Why a cluster of the test's own cannot be started here, or None."""
    if not (PG_BIN / "initdb").is_file():
        return f"no initdb in {PG_BIN}"
    if shutil.which("runuser") is None and os.geteuid() == 0:
        return "no runuser to start PostgreSQL as a non-root user"
    try:
        pwd.getpwnam(OS_USER)
    except KeyError:
        return f"no OS user {OS_USER!r} to run PostgreSQL as"
    return None


def require_binaries(what: str) -> None:
    """Skip (fail in CI) unless a cluster can be started; ``what`` says what needs it."""
    missing = missing_binaries()
    if missing:
        if IN_CI:
            pytest.fail(f"{what} is needed in CI: {missing}")
        pytest.skip(f"cannot start {what}: {missing}")


def chown_to_owner(*paths: Path) -> None:
    """Give ``paths`` to the OS user the cluster runs as."""
    owner = pwd.getpwnam(OS_USER)
    for path in paths:
        os.chown(path, owner.pw_uid, owner.pw_gid)


def _as_owner(*args: str, inside: Sequence[str] = ()) -> None:
    prefix = ["runuser", "-u", OS_USER, "--"] if os.geteuid() == 0 else []
    subprocess.run([*inside, *prefix, *args], check=True, capture_output=True, timeout=120)


@contextmanager
def own_cluster(
    root: Path,
    *,
    host: str,
    port: int,
    hba: str,
    conf: str = "",
    inside: Sequence[str] = (),
) -> Iterator[Path]:
    """A running cluster in ``root``/data listening on ``host``:``port`` with ``hba`` as its
    pg_hba.conf and ``conf`` added to postgresql.conf; ``inside`` prefixes the start command
    (e.g. ``ip netns exec NS``). Yields the data dir; stops and removes it after."""
    data = root / "data"
    chown_to_owner(root)
    started = False
    try:
        _as_owner(
            str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync"
        )
        with (data / "postgresql.conf").open("a") as settings:
            settings.write(
                f"listen_addresses = '{host}'\nport = {port}\n"
                f"unix_socket_directories = '{root}'\n"
                "fsync = off\nsynchronous_commit = off\nmax_connections = 60\n"
                f"shared_buffers = 16MB\n{conf}"
            )
        (data / "pg_hba.conf").write_text(hba)
        start = [str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "start"]
        _as_owner(*start, inside=inside)
        started = True
        wait_listening(host, port, inside=inside)
        yield data
    finally:
        if started:
            _as_owner(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


def wait_listening(
    host: str, port: int, *, inside: Sequence[str] = (), seconds: float = 30
) -> None:
    """Wait until something accepts TCP connections at ``host``:``port`` (seen from the
    namespace ``inside`` enters, when given)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if inside:
            probe = f"import socket; socket.create_connection(({host!r}, {port}), 1).close()"
            done = subprocess.run([*inside, "python3", "-c", probe], capture_output=True)
            if done.returncode == 0:
                return
        else:
            with socket.socket() as sock:
                if sock.connect_ex((host, port)) == 0:
                    return
        time.sleep(0.1)
    raise AssertionError(f"nothing listened on {host}:{port} within {seconds:.0f} s")
