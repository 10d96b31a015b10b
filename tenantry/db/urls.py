"""Database URLs: the one parser every URL goes through, driver selection, and masking.

Every URL tenantry accepts (settings, CLI options, API bodies, stored server URLs) is parsed
by :func:`parse_url`. A failure is a :class:`ConfigurationError` that names the field and the
part that is wrong, and never repeats any part of the input: a mistyped URL can put the
password where the host or port should be, so echoing a "bad port" could print a password.

Passwords may be written as typed, ``@``, ``:`` and spaces included: the credentials end at
the last ``@`` before the host, and the user ends at the first ``:``. Only ``/``, ``?`` and ``#``
(which end the host part) must be percent-encoded (``%2F``, ``%3F``, ``%23``); ``%`` followed
by two hex digits is always read as an escape.

Text that may contain a URL or a driver's connection string is made safe by :func:`redact`,
which masks passwords by their place in the text, never by searching for the password itself
(replacing a one-letter password everywhere would spell it out in what is left).
"""

from __future__ import annotations

import importlib.util
import ipaddress
import re
from urllib.parse import parse_qsl, unquote

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from tenantry.errors import ConfigurationError

#: The backends tenantry manages, keyed by the scheme a user may write, with the driver used.
DRIVERS: dict[str, str] = {
    "sqlite": "sqlite+pysqlite",
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
}
SUPPORTED_DRIVERS = {"pysqlite", "psycopg", "pymysql"}

#: Longer than any real URL; a bound on what is parsed and stored.
MAX_URL_LENGTH = 2048
#: PostgreSQL's identifier limit is 63 bytes, MySQL's 64 characters.
MAX_DATABASE_NAME = 64

_EXAMPLE = (
    "Use e.g. sqlite:///path/to.db, postgresql://user:pass@host:5432/name "
    "or mysql://user:pass@host:3306/name."
)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]{0,39}")
_OPTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_HOST_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_\-]{0,61}[A-Za-z0-9_])?")

_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_PREFER = ("disable", "prefer", "require")
_BOOLEANS = ("true", "false", "1", "0")
_FREE = None  # any printable value

#: Query options tenantry passes to each driver, with their allowed values (``None``: free
#: text, ``int``: a whole number). Anything else is refused with the option named, so that
#: a typo (``sslmod=require``) cannot silently connect without TLS.
_OPTIONS: dict[str, dict[str, tuple[str, ...] | type[int] | None]] = {
    "postgresql": {
        "sslmode": _SSLMODES,
        "sslrootcert": _FREE,
        "sslcert": _FREE,
        "sslkey": _FREE,
        "sslcrl": _FREE,
        "gssencmode": _PREFER,
        "channel_binding": _PREFER,
        "target_session_attrs": (
            "any",
            "read-write",
            "read-only",
            "primary",
            "standby",
            "prefer-standby",
        ),
        "connect_timeout": int,
        "application_name": _FREE,
        "options": _FREE,
    },
    "mysql": {
        "charset": ("utf8mb4", "utf8", "utf8mb3", "latin1", "ascii", "binary"),
        "ssl_ca": _FREE,
        "ssl_cert": _FREE,
        "ssl_key": _FREE,
        "ssl_capath": _FREE,
        "ssl_cipher": _FREE,
        "ssl_check_hostname": _BOOLEANS,
        "connect_timeout": int,
        "read_timeout": int,
        "write_timeout": int,
    },
    "sqlite": {},
}


def _error(setting: str, problem: str, hint: str = _EXAMPLE) -> ConfigurationError:
    return ConfigurationError(f"{setting} {problem}", hint)


def parse_url(
    raw: object, *, setting: str = "the database URL", require_database: bool = True
) -> URL:
    """Parse ``raw`` into a SQLAlchemy URL with tenantry's driver for its backend.

    ``postgresql://`` becomes ``postgresql+psycopg://`` and ``mysql://`` becomes
    ``mysql+pymysql://``. ``setting`` names the field in errors (``DATABASE_URL``, ``--url``,
    ``url``); ``require_database=False`` accepts a server URL that names no database. Raises
    :class:`ConfigurationError` for anything that is not a well-formed SQLite, PostgreSQL or
    MySQL/MariaDB URL; its message never contains any part of ``raw``.
    """
    if not isinstance(raw, str):
        raise _error(setting, "must be text.")
    text = raw.strip()
    if not text:
        raise _error(setting, "is empty.")
    if len(text) > MAX_URL_LENGTH:
        raise _error(setting, f"is longer than {MAX_URL_LENGTH} characters.")
    if not text.isprintable():
        raise _error(
            setting,
            "contains a control character (a NUL, tab or line break).",
            "Remove it; a password that holds one must be percent-encoded (e.g. %09 for tab).",
        )
    scheme, sep, rest = text.partition("://")
    if not sep or not _SCHEME.fullmatch(scheme):
        raise _error(setting, "is not a valid database URL: it does not start with scheme://.")
    backend, _, driver = scheme.lower().partition("+")
    if backend not in DRIVERS:
        raise _error(
            setting,
            f"uses the unsupported backend {backend!r}; tenantry supports "
            "sqlite, postgresql and mysql/mariadb.",
        )
    if driver and driver not in SUPPORTED_DRIVERS:
        raise _error(
            setting,
            f"asks for the driver {driver!r}, which tenantry does not ship.",
            f"Drop '+{driver}' from the URL; tenantry picks {DRIVERS[backend]}.",
        )
    if backend == "sqlite":
        return _sqlite_url(text, setting)
    return _server_url(backend, rest, setting, require_database=require_database)


def _sqlite_url(text: str, setting: str) -> URL:
    try:
        url = make_url(text)
    except (ArgumentError, ValueError):
        raise _error(setting, "is not a valid SQLite URL.") from None
    if url.host or url.username or url.password or url.port:
        raise _error(
            setting,
            "gives a host or credentials, which a SQLite URL has none of.",
            "Write sqlite:///relative/path.db or sqlite:////absolute/path.db.",
        )
    if url.query:
        raise _error(
            setting,
            "has query options, which tenantry's SQLite URLs do not take.",
            "Remove everything from the '?' on.",
        )
    if not url.database or url.database == ":memory:":
        raise _error(
            setting,
            "names no SQLite file.",
            "Give a path, e.g. sqlite:///./.tenantry/master.db.",
        )
    return url.set(drivername=DRIVERS["sqlite"])


def _server_url(backend: str, rest: str, setting: str, *, require_database: bool) -> URL:
    """``user:password@host:port/database?options`` of a PostgreSQL or MySQL URL."""
    kind = "postgresql" if backend.startswith("postgres") else "mysql"
    cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:cut], rest[cut:]
    if "@" in tail:
        # The credentials cannot end after the host: some '/', '?' or '#' belongs to them.
        raise _error(
            setting,
            "has an '@' after the host.",
            "If the password contains '/', '?' or '#', percent-encode them (%2F, %3F, %23); "
            "an '@' in a query option must be written %40.",
        )
    if "#" in tail:
        raise _error(setting, "has a '#' fragment, which a database URL does not take.")
    userinfo, at, hostport = authority.rpartition("@")
    if " " in hostport or " " in tail:
        # A space in the credentials is theirs (SQLAlchemy renders it as typed); elsewhere
        # it is a typo.
        raise _error(setting, "contains a space in its host, port, database or options.")
    user_text, colon, password_text = userinfo.partition(":")
    host, port = _host_and_port(hostport, setting)
    path, _, query_text = tail.partition("?")
    name = unquote(path[1:]) if path else ""
    if name and (
        "/" in name or " " in name or not name.isprintable() or len(name) > MAX_DATABASE_NAME
    ):
        raise _error(
            setting,
            f"has an invalid database name: it must be 1 to {MAX_DATABASE_NAME} characters "
            "without '/', spaces or control characters.",
        )
    if not name and require_database:
        raise _error(
            setting,
            "names no database.",
            f"Add the database name after the host, e.g. {kind}://user:pass@host/name.",
        )
    username = unquote(user_text) if at else ""
    password = unquote(password_text) if at and colon else ""
    if not username.isprintable() or not password.isprintable():
        raise _error(setting, "has a control character in its user or password.")
    if kind == "mysql" and not _latin1(password):
        # PyMySQL sends the password as Latin-1; anything else fails inside the driver with
        # an error that quotes the offending character.
        raise _error(
            setting,
            "has a password with characters PyMySQL cannot send (it sends Latin-1 only).",
            "Use a password of Latin-1 characters for this MySQL/MariaDB user.",
        )
    return URL.create(
        DRIVERS[backend],
        username=username or None,
        password=password or None,
        host=host,
        port=port,
        database=name or None,
        query=_options(kind, query_text, setting),
    )


def _latin1(text: str) -> bool:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def _host_and_port(hostport: str, setting: str) -> tuple[str, int | None]:
    """The host and the port of ``host:port``, ``[v6]:port`` or ``host``."""
    if hostport.startswith("["):
        inside, bracket, after = hostport[1:].partition("]")
        try:
            ipaddress.IPv6Address(inside)
        except ValueError:
            raise _error(setting, "has an invalid IPv6 address in brackets.") from None
        if not bracket or (after and not after.startswith(":")):
            raise _error(setting, "has an invalid IPv6 host: write it as [address]:port.")
        host, port_text, has_port = inside, after[1:], bool(after)
    else:
        host, sep, port_text = hostport.partition(":")
        has_port = bool(sep)
        if not host:
            raise _error(
                setting,
                "names no host.",
                "Write the server's host name or address after '://' (and after 'user:pass@').",
            )
        labels = host.rstrip(".").split(".")
        if len(host) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
            raise _error(
                setting,
                "has an invalid host: use a host name, an IPv4 address or [an IPv6 address].",
                "If the password contains '/', '?' or '#', percent-encode them (%2F, %3F, %23).",
            )
    if not has_port:
        return host, None
    if not port_text.isascii() or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise _error(
            setting,
            "has an invalid port: it must be a number from 1 to 65535.",
            "e.g. :5432 for PostgreSQL or :3306 for MySQL/MariaDB; leave it out for the "
            "default. A password containing '/', '?' or '#' must percent-encode them.",
        )
    return host, int(port_text)


def _options(kind: str, query: str, setting: str) -> dict[str, str]:
    """The query options of a server URL, each one known for the backend and valid."""
    known = _OPTIONS[kind]
    options: dict[str, str] = {}
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise _error(setting, "has a malformed query: write ?name=value&name=value.") from None
    for key, value in pairs:
        if not _OPTION_NAME.fullmatch(key):
            raise _error(setting, "has a query option with an invalid name.")
        allowed = known.get(key, ...)
        if allowed is ...:
            raise _error(
                setting,
                f"has the unknown option {key!r} for {kind}.",
                f"Known options: {', '.join(sorted(known))}.",
            )
        if key in options:
            raise _error(setting, f"gives the option {key!r} twice.")
        if not value.isprintable() or not value:
            raise _error(setting, f"has an empty or unprintable value for {key!r}.")
        if allowed is int and not (value.isascii() and value.isdigit() and len(value) < 7):
            raise _error(setting, f"needs a whole number of seconds for {key!r}.")
        if isinstance(allowed, tuple) and value not in allowed:
            raise _error(
                setting,
                f"has an invalid value for {key!r}.",
                f"Use one of: {', '.join(allowed)}.",
            )
        options[key] = value
    return options


_DRIVER_MODULES = {"psycopg": ("psycopg", "postgres"), "pymysql": ("pymysql", "mysql")}


def require_driver(url: URL) -> None:
    """Raise a clear error when the driver for ``url`` is not installed."""
    driver = url.get_driver_name()
    if driver not in _DRIVER_MODULES:
        return
    module, extra = _DRIVER_MODULES[driver]
    if importlib.util.find_spec(module) is None:
        raise ConfigurationError(
            f"the {backend_of(url)} driver ({module}) is not installed.",
            f"Install it with: pip install 'tenantry[{extra}]' (or 'tenantry[all]').",
        )


def backend_of(url: URL) -> str:
    """``sqlite``, ``postgresql`` or ``mysql`` (MariaDB counts as mysql)."""
    name = url.get_backend_name()
    return "mysql" if name == "mariadb" else name


def mask(url: URL) -> str:
    """The URL as text with its password replaced by ``***``."""
    return url.render_as_string(hide_password=True)


def mask_raw(raw: str) -> str:
    """Text that did not parse as a URL, shown safely: only its scheme."""
    scheme, sep, _ = raw.strip().partition("://")
    return f"{scheme}://…" if sep and _SCHEME.fullmatch(scheme) else "(not a URL)"


# Credentials in a URL within text: everything from '://' to the last '@' before the next
# blank or quote (a typed password may hold '@' and ':'). Masking too much beats too little.
_URL_CREDENTIALS = re.compile(
    r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^\s'\"<>]*)@"
)
# ``password=…`` in a libpq conninfo string or a tool's environment, quoted or not.
_KEYWORD_SECRET = re.compile(
    r"(?P<key>\b\w*(?:password|passwd|pwd)\s*=\s*)(?P<value>'(?:[^'\\]|\\.)*'|\"[^\"]*\"|[^\s,;)]+)",
    re.IGNORECASE,
)


def _mask_userinfo(match: re.Match[str]) -> str:
    user, colon, _ = match.group("userinfo").partition(":")
    if "@" in user:  # no telling where the user ends: hide all of it
        return f"{match.group('scheme')}***@"
    return f"{match.group('scheme')}{user}:***@" if colon else match.group(0)


def redact(text: str) -> str:
    """``text`` (an error message, a tool's output) with every credential in it masked.

    Masks by structure, never by looking for a known password: the password of any
    ``scheme://user:password@host`` becomes ``***``, as does the value of any
    ``password=…`` (libpq conninfo, environment assignments). Nothing else is changed, so a
    short password ("p", "127") cannot be worked out from what was replaced.
    """
    text = _URL_CREDENTIALS.sub(_mask_userinfo, text)
    return _KEYWORD_SECRET.sub(lambda m: f"{m.group('key')}***", text)
