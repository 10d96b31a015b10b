"""TLS for connections to database servers: what a URL asks for, and the policy that may
require it.

A URL asks for TLS through its own options: PostgreSQL's ``sslmode`` (``require``,
``verify-ca`` or ``verify-full``; ``prefer`` and ``allow`` may silently fall back to plain
text, so they do not count), MySQL/MariaDB's ``ssl_ca``, ``ssl_capath`` or ``ssl_cert``
(with any of them PyMySQL insists on TLS and checks the server's certificate). Every place a
URL becomes a connection (pooled engines, the cached server-admin engines, the dump and
restore tools) calls :func:`check_transport`, so ``TENANTRY_REQUIRE_TLS=true`` refuses a
plain-text URL before anything is sent over the network. SQLite is a local file: exempt.
"""

from __future__ import annotations

import os

from sqlalchemy.engine import URL

from tenantry.db.urls import backend_of, mask
from tenantry.errors import ConfigurationError, DatabaseUnreachable

REQUIRE_TLS_ENV = "TENANTRY_REQUIRE_TLS"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}

#: sslmodes that never connect without TLS.
PG_TLS_MODES = ("require", "verify-ca", "verify-full")
#: MySQL options any one of which makes PyMySQL (and the mariadb tools) insist on TLS.
MYSQL_TLS_OPTIONS = ("ssl_ca", "ssl_capath", "ssl_cert")

PG_HINT = (
    "Add ?sslmode=verify-full&sslrootcert=/path/to/ca.pem to the URL (or ?sslmode=require "
    "to encrypt without checking the server's certificate)."
)
MYSQL_HINT = (
    "Add ?ssl_ca=/path/to/ca.pem to the URL (the CA that signed the server's certificate; "
    "add &ssl_check_hostname=false if the certificate does not name the host)."
)


def tls_required() -> bool:
    """Whether every connection to a database server must use TLS (``TENANTRY_REQUIRE_TLS``)."""
    raw = os.environ.get(REQUIRE_TLS_ENV, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigurationError(
        f"{REQUIRE_TLS_ENV} must be true or false, got {raw!r}.",
        "Set it to true to refuse connections to database servers without TLS, or unset it.",
    )


def uses_tls(url: URL) -> bool:
    """Whether connecting to ``url`` can only happen over TLS (SQLite: never needed)."""
    backend = backend_of(url)
    if backend == "postgresql":
        return url.query.get("sslmode") in PG_TLS_MODES
    if backend == "mysql":
        return any(url.query.get(option) for option in MYSQL_TLS_OPTIONS)
    return False


def check_transport(url: URL) -> None:
    """Refuse ``url`` when TLS is required and the URL does not insist on it.

    Called where URLs become connections, before any connection is attempted; the error
    names the URL (password masked) and the option to add.
    """
    backend = backend_of(url)
    if backend == "sqlite" or uses_tls(url) or not tls_required():
        return
    raise ConfigurationError(
        f"{REQUIRE_TLS_ENV} is on and {mask(url)} does not ask for TLS; tenantry did not connect.",
        PG_HINT if backend == "postgresql" else MYSQL_HINT,
    )


def tls_hint(url: URL, detail: str) -> str | None:
    """What to do when a server's refusal (``detail``) is about TLS, else ``None``."""
    lowered = detail.lower()
    postgresql = backend_of(url) == "postgresql"
    if postgresql and "no encryption" in lowered:  # pg_hba.conf has only hostssl lines for us
        return f"The server accepts only TLS connections. {PG_HINT}"
    if "ssl" in lowered and ("support" in lowered or "no ssl" in lowered):
        return (
            "The URL asks for TLS and the server does not offer it: enable TLS on the "
            "server, or (on a trusted network only) remove the URL's TLS options."
        )
    if "certificate" in lowered or "root cert" in lowered:
        return (
            "The server's certificate could not be checked: point "
            + ("sslrootcert" if postgresql else "ssl_ca")
            + " at the CA that signed it (and make sure the certificate names the host)."
        )
    if not postgresql and ("ssl" in lowered or "tls" in lowered):
        return f"The TLS handshake failed. {MYSQL_HINT}"
    return None


def unreadable_tls_file(url: URL, exc: OSError) -> DatabaseUnreachable:
    """The error for a TLS file named in ``url`` that the driver could not read (PyMySQL
    opens ``ssl_ca`` & co. itself and raises the OS error)."""
    return DatabaseUnreachable(
        f"cannot connect to {mask(url)}: a file it names could not be read "
        f"({exc.strerror or type(exc).__name__}).",
        "Check the paths of ssl_ca, ssl_capath, ssl_cert and ssl_key (or sslrootcert, "
        "sslcert, sslkey) and that this process may read them.",
    )


def pg_tool_env(url: URL) -> dict[str, str]:
    """libpq environment variables carrying the TLS options of ``url`` (for pg_dump & co)."""
    names = {
        "sslmode": "PGSSLMODE",
        "sslrootcert": "PGSSLROOTCERT",
        "sslcert": "PGSSLCERT",
        "sslkey": "PGSSLKEY",
        "sslcrl": "PGSSLCRL",
    }
    return {names[key]: str(url.query[key]) for key in names if key in url.query}


def mysql_tool_args(url: URL) -> list[str]:
    """``mariadb``/``mariadb-dump`` options carrying the TLS options of ``url``."""
    args = [
        f"--{key.replace('_', '-')}={url.query[key]}"
        for key in ("ssl_ca", "ssl_capath", "ssl_cert", "ssl_key", "ssl_cipher")
        if key in url.query
    ]
    if uses_tls(url):
        args.append("--ssl")
        # PyMySQL checks the host name unless told not to; the tools do the same.
        if str(url.query.get("ssl_check_hostname", "true")).lower() not in ("false", "0"):
            args.append("--ssl-verify-server-cert")
    return args
