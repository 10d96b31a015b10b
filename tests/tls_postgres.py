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

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from tenantry.db.urls import parse_url
from tests.conftest import IN_CI
from tests.helpers import free_port
from tests.own_postgres import chown_to_owner, missing_binaries, own_cluster


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
    if shutil.which("openssl") is None:
        return "no openssl"
    return missing_binaries()


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
    cert, key = _write_certificate(root)
    chown_to_owner(cert, key)
    port = free_port()
    # Over TCP, TLS or nothing. The superuser is trusted; every other login must give its
    # password (SCRAM).
    hba = (
        "local all all trust\nhostssl all postgres 127.0.0.1/32 trust\n"
        "hostssl all all 127.0.0.1/32 scram-sha-256\n"
    )
    tls = f"ssl = on\nssl_cert_file = '{cert}'\nssl_key_file = '{key}'\n"
    with own_cluster(root, host="127.0.0.1", port=port, hba=hba, conf=tls):
        yield TlsPostgres(port, cert)
