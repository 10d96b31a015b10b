"""Verifying a store's custom domain: the operator proves control of the host by publishing
its token, over HTTP (``http://HOST/.well-known/tenantry/<token>``, the token as the body)
or DNS (a TXT record ``_tenantry.HOST`` holding the token; needs ``dnspython``).

The look-ups run outside any transaction (they may take seconds); only a success writes.
"""

from __future__ import annotations

import http.client
import importlib
from collections.abc import Callable
from dataclasses import dataclass

from tenantry.runtime import Platform
from tenantry.services import domains, stores

#: Where to connect to reach a host's web server: ``host -> (address, port)``. The default
#: asks the system's resolver (port 80); tests map hosts to a local server.
HostAddress = Callable[[str], tuple[str, int]]

TIMEOUT_S = 5.0
#: The most of a response body read: a token is 32 characters.
MAX_BODY = 1024


def system_address(host: str) -> tuple[str, int]:
    """Port 80 of ``host`` as the system resolves it."""
    return host, 80


@dataclass(frozen=True)
class Verification:
    """What a verification found: whether the host is now verified, and how (or why not)."""

    host: str
    verified: bool
    method: str | None
    detail: str


def http_token_found(host: str, token: str, address: HostAddress = system_address) -> str | None:
    """``None`` when ``http://HOST/.well-known/tenantry/<token>`` answers 200 with the
    token as its body, else why not (one line, for the operator)."""
    where, port = address(host)
    conn = http.client.HTTPConnection(where, port, timeout=TIMEOUT_S)
    try:
        conn.request("GET", domains.WELL_KNOWN_PATH + token, headers={"Host": host})
        response = conn.getresponse()
        body = response.read(MAX_BODY)
    except (OSError, http.client.HTTPException) as exc:
        return f"http://{host}{domains.WELL_KNOWN_PATH}… could not be fetched ({exc})"
    finally:
        conn.close()
    if response.status != 200:
        return f"http://{host}{domains.WELL_KNOWN_PATH}<token> answered {response.status}"
    if body.strip() != token.encode():
        return f"http://{host}{domains.WELL_KNOWN_PATH}<token> does not serve the token"
    return None


def dns_token_found(host: str, token: str) -> str | None:
    """``None`` when a TXT record ``_tenantry.HOST`` holds the token, else why not."""
    try:
        resolver = importlib.import_module("dns.resolver")
    except ImportError:
        return "DNS TXT was not checked (install dnspython: pip install 'tenantry[dns]')"
    name = domains.TXT_PREFIX + host
    try:
        answers = resolver.resolve(name, "TXT", lifetime=TIMEOUT_S)
    except Exception as exc:  # NXDOMAIN, no answer, timeout: all mean "not published"
        return f"no TXT record {name} ({type(exc).__name__})"
    texts = {b"".join(answer.strings).decode(errors="replace").strip() for answer in answers}
    return None if token in texts else f"the TXT record {name} does not hold the token"


def verify(
    platform: Platform,
    store_ref: str,
    raw_host: str,
    *,
    actor: str,
    address: HostAddress | None = None,
    use_dns: bool = True,
) -> Verification:
    """Check that the token of ``store_ref``'s domain ``raw_host`` is published (HTTP first,
    then DNS) and record it as verified if so. A domain verified before stays verified.
    ``address`` maps the host to where its web server is (default :func:`system_address`)."""
    reach = address or system_address
    with platform.sessions() as session:
        store = stores.get_store(session, store_ref)
        domain = domains.get_domain(session, store, raw_host)
        host, token, already = domain.host, domain.token, domain.verified_at is not None
    if already:
        return Verification(host, True, None, "already verified")
    checks: list[tuple[str, Callable[[], str | None]]] = [
        ("http", lambda: http_token_found(host, token, reach))
    ]
    if use_dns:
        checks.append(("dns", lambda: dns_token_found(host, token)))
    problems: list[str] = []
    method: str | None = None
    for name, check in checks:
        problem = check()
        if problem is None:
            method = name
            break
        problems.append(problem)
    if method is None:
        return Verification(host, False, None, "; ".join(problems))
    with platform.writer_sessions.begin() as session:
        store = stores.get_store(session, store_ref)
        domains.mark_verified(session, domains.get_domain(session, store, host), actor=actor)
    return Verification(host, True, method, f"token found over {method}")


def instructions(host: str, token: str) -> str:
    """How the operator proves control of ``host`` (shown when the domain is added)."""
    return (
        f"Serve the text {token} at http://{host}{domains.WELL_KNOWN_PATH}{token}, or publish "
        f"a DNS TXT record {domains.TXT_PREFIX}{host} with the value {token}; then run "
        "`tenantry stores domains verify`."
    )
