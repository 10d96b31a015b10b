"""A real PgBouncer (Debian's ``pgbouncer`` package) in transaction mode in front of the test
PostgreSQL server, started by a fixture, with its admin console read through ``psql``.

Logins: PgBouncer checks clients against its own ``auth_file``; the fixture writes it (the
stores' runtime logins the test allows, plus an admin user for ``SHOW POOLS``/``SHOW STATS``)
and reloads PgBouncer. Skipped locally when the binary is missing, failed when CI=true.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import IN_CI, SERVER_URLS, require_server

ADMIN = "tt_pgb_admin"


def _binary() -> str | None:
    return shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PgBouncer:
    """A running PgBouncer: its port, the logins it knows, its admin console."""

    port: int
    directory: Path
    admin_password: str
    logins: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """Its URL as ``servers add --pooler-url`` takes it (no credentials needed)."""
        return f"postgresql://127.0.0.1:{self.port}/postgres"

    def allow(self, user: str, password: str) -> None:
        """Let ``user`` log in through PgBouncer (rewrites its auth file, then RELOAD)."""
        self.logins[user] = password
        self._write_auth_file()
        self.admin("RELOAD")

    def admin(self, command: str) -> list[dict[str, str]]:
        """Run ``command`` on the admin console; its rows as dicts."""
        connection = ["-h", "127.0.0.1", "-p", str(self.port), "-U", ADMIN, "-d", "pgbouncer"]
        done = subprocess.run(
            ["psql", *connection, "-X", "-A", "-F", "\t", "-P", "footer=off", "-c", command],
            env={**os.environ, "PGPASSWORD": self.admin_password},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        lines = [line for line in done.stdout.splitlines() if line]
        if not lines:
            return []
        header = lines[0].split("\t")
        return [dict(zip(header, line.split("\t"), strict=False)) for line in lines[1:]]

    def pools(self, database: str) -> list[dict[str, str]]:
        """``SHOW POOLS`` rows of ``database``."""
        return [row for row in self.admin("SHOW POOLS") if row.get("database") == database]

    def transactions(self, database: str) -> int:
        """Transactions PgBouncer has passed to ``database`` (``SHOW STATS``), 0 if none."""
        for row in self.admin("SHOW STATS"):
            if row.get("database") == database:
                return int(row["total_xact_count"])
        return 0

    def _write_auth_file(self) -> None:
        users = {ADMIN: self.admin_password, **self.logins}
        text = "".join(f'"{u}" "{p}"\n' for u, p in users.items())
        path = self.directory / "userlist.txt"
        path.write_text(text)
        _give_to_runner(path)


def _runner() -> str | None:
    """The user PgBouncer runs as (it refuses to run as root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    return None


def _give_to_runner(path: Path) -> None:
    user = _runner()
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    path.chmod(0o700 if path.is_dir() else 0o600)


@pytest.fixture
def pgbouncer() -> Iterator[PgBouncer]:
    """PgBouncer in transaction mode on a free port, in front of the test PostgreSQL server,
    stopped (and its files removed) after the test."""
    require_server("postgresql")
    binary = _binary()
    if binary is None:
        if IN_CI:
            pytest.fail("pgbouncer is needed in CI (Debian package pgbouncer, see .ci/run)")
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer)")
    from tenantry.db.urls import parse_url

    server = parse_url(SERVER_URLS["postgresql"])
    directory = Path(tempfile.mkdtemp(prefix="tt_pgbouncer_"))
    _give_to_runner(directory)
    bouncer = PgBouncer(_free_port(), directory, uuid.uuid4().hex)
    bouncer._write_auth_file()
    ini = directory / "pgbouncer.ini"
    ini.write_text(
        "[databases]\n"
        f"* = host={server.host or '127.0.0.1'} port={server.port or 5432}\n"
        "[pgbouncer]\n"
        "listen_addr = 127.0.0.1\n"
        f"listen_port = {bouncer.port}\n"
        "unix_socket_dir =\n"
        "auth_type = scram-sha-256\n"
        f"auth_file = {directory / 'userlist.txt'}\n"
        "pool_mode = transaction\n"
        f"admin_users = {ADMIN}\n"
        "max_client_conn = 200\n"
        "default_pool_size = 5\n"
        "server_round_robin = 1\n"
        "ignore_startup_parameters = extra_float_digits\n"
        f"logfile = {directory / 'pgbouncer.log'}\n"
        f"pidfile = {directory / 'pgbouncer.pid'}\n"
    )
    _give_to_runner(ini)
    user = _runner()
    command = [binary] + (["-u", user] if user else []) + [str(ini)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", bouncer.port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log = directory / "pgbouncer.log"
                    out = process.stdout.read().decode() if process.stdout else ""
                    detail = log.read_text() if log.exists() else ""
                    pytest.fail(f"pgbouncer did not start: {out} {detail}")
                time.sleep(0.1)
        yield bouncer
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout:
            process.stdout.close()
        shutil.rmtree(directory, ignore_errors=True)
