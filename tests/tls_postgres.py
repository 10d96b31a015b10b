"""A PostgreSQL 15 of the test session's own that accepts TLS connections only.

``initdb`` into a temp dir (as the ``postgres`` OS user: initdb refuses root), a self-signed
certificate from ``openssl req -x509``, ``ssl = on``, and a pg_hba.conf whose only TCP
lines are ``hostssl``: the server itself refuses any connection without TLS (and, unlike
the machine's shared server, checks the passwords of logins other than ``postgres``). It
listens on a free port of 127.0.0.1 and is stopped and removed after the session (per xdist
worker). Skipped locally, failed in CI, when the PostgreSQL server binaries or openssl are
missing.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from tenantry.db.urls import parse_url
from tests.conftest import IN_CI
from tests.helpers import free_port


def _pg_bin() -> Path:
    """The newest installed PostgreSQL's server binaries (Debian keeps one dir per version)."""
    if "TENANTRY_TEST_PG_BIN" in os.environ:
        return Path(os.environ["TENANTRY_TEST_PG_BIN"])
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name or 0))
    return found[-1] if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _pg_bin()
OS_USER = "postgres"


@dataclass(frozen=True)
class TlsPostgres:
    """The server's port and its CA (the self-signed certificate itself)."""

    port: int
    ca_file: Path

    def url(self, database: str = "postgres", **options: str) -> URL:
        """``database`` as the superuser ``postgres`` (trust auth), with ``options``."""
        query = "&".join(f"{k}={v}" for k, v in options.items())
        raw = f"postgresql://postgres@127.0.0.1:{self.port}/{database}"
        return parse_url(f"{raw}?{query}" if query else raw)

    def raw(self, database: str = "postgres", **options: str) -> str:
        """:meth:`url` as text with its password (none here) shown."""
        return self.url(database, **options).render_as_string(hide_password=False)


def _missing() -> str | None:
    if not (PG_BIN / "initdb").is_file():
        return f"no initdb in {PG_BIN}"
    if shutil.which("openssl") is None:
        return "no openssl"
    if shutil.which("runuser") is None and os.geteuid() == 0:
        return "no runuser to start PostgreSQL as a non-root user"
    try:
        pwd.getpwnam(OS_USER)
    except KeyError:
        return f"no OS user {OS_USER!r} to run PostgreSQL as"
    return None


def _as_owner(*args: str) -> None:
    prefix = ["runuser", "-u", OS_USER, "--"] if os.geteuid() == 0 else []
    subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=120)


def _write_certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "server.crt", directory / "server.key"
    request = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
    request += ["-subj", "/CN=127.0.0.1"]
    names = ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)]
    subprocess.run(
        ["openssl", *request, *names],
        check=True,
        capture_output=True,
        timeout=60,
    )
    key.chmod(0o600)  # PostgreSQL refuses a key others may read
    return cert, key


@pytest.fixture(scope="session")
def tls_postgres() -> Iterator[TlsPostgres]:
    """A running TLS-only PostgreSQL for the session (see the module docstring)."""
    missing = _missing()
    if missing:
        if IN_CI:
            pytest.fail(f"a TLS PostgreSQL is needed in CI: {missing}")
        pytest.skip(f"cannot start a TLS PostgreSQL: {missing}")
    root = Path(tempfile.mkdtemp(prefix="tenantry-tls-pg-"))
    data = root / "data"
    owner = pwd.getpwnam(OS_USER)
    cert, key = _write_certificate(root)
    for path in (root, cert, key):
        os.chown(path, owner.pw_uid, owner.pw_gid)
    port = free_port()
    started = False
    try:
        _as_owner(
            str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync"
        )
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"listen_addresses = '127.0.0.1'\nport = {port}\n"
                f"unix_socket_directories = '{root}'\n"
                f"ssl = on\nssl_cert_file = '{cert}'\nssl_key_file = '{key}'\n"
                "fsync = off\nsynchronous_commit = off\nmax_connections = 40\n"
                "shared_buffers = 16MB\n"
            )
        # Sockets in the temp dir for pg_ctl; over TCP, TLS or nothing. The superuser is
        # trusted; every other login must give its password (SCRAM).
        (data / "pg_hba.conf").write_text(
            "local all all trust\nhostssl all postgres 127.0.0.1/32 trust\n"
            "hostssl all all 127.0.0.1/32 scram-sha-256\n"
        )
        _as_owner(str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "start")
        started = True
        _wait_listening(port)
        yield TlsPostgres(port, cert)
    finally:
        if started:
            _as_owner(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


def _wait_listening(port: int) -> None:
    import socket

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"the TLS PostgreSQL did not listen on port {port}")
