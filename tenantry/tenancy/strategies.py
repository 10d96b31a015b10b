"""The ways a request names its store, tried in the order a resolver is given them.

Each strategy looks at the request's facts and returns the store it names (with the path
prefix it consumed), ``None`` when the request does not use it, or raises when the request
uses it wrongly (a garbage Host header, an unknown API key). A strategy with a
``cache_key(request)`` method (what its answer depends on) lets the resolver remember its
answers for a few seconds; ``ByApiKey`` has none, so a revoked key is refused at once.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.orm import Session

from tenantry.db.master.models import Store
from tenantry.errors import ConfigurationError, InvalidInput, NotFound
from tenantry.services import apikeys, domains, stores

#: What a slug can be in a host label or a path segment (``stores.validate_slug`` decides).
_SLUG = r"(?P<slug>[a-z0-9][a-z0-9-]{0,62})"


@dataclass(frozen=True)
class RequestFacts:
    """What resolution looks at: the Host header, the path and the headers (names in
    lower case), whatever the framework."""

    host: str | None
    path: str
    headers: Mapping[str, str]


@dataclass(frozen=True)
class Match:
    """The store a strategy found, and the path prefix it consumed (``""`` if none)."""

    store: Store
    prefix: str = ""


class Strategy(Protocol):
    """One way of naming the store."""

    name: str

    def find(self, master: Session, request: RequestFacts) -> Match | None:
        """The store ``request`` names this way, or ``None`` if it does not use this way."""
        ...


def _by_slug(master: Session, slug: str, how: str) -> Store:
    try:
        return stores.get_store(master, slug)
    except NotFound:
        raise NotFound(f"no store {slug!r} ({how}).") from None


class ByHost:
    """The Host header: a verified custom domain of a store, else ``pattern`` (such as
    ``{slug}.example.com``; default ``TENANTRY_TENANT_HOST_PATTERN``). Case-insensitive,
    the port ignored; a Host that is not a host name is refused (400)."""

    name = "host"

    def __init__(self, pattern: str | None = None, *, custom_domains: bool = True) -> None:
        self.pattern = pattern
        self.custom_domains = custom_domains
        self._regex = _host_regex(pattern) if pattern else None

    def with_default(self, pattern: str | None) -> ByHost:
        """This strategy, with ``pattern`` when it was given none."""
        if self.pattern is not None or pattern is None:
            return self
        return ByHost(pattern, custom_domains=self.custom_domains)

    def cache_key(self, request: RequestFacts) -> Hashable:
        """What this strategy's answer depends on: the host."""
        return (request.host or "").lower()

    def find(self, master: Session, request: RequestFacts) -> Match | None:
        """The store of the request's host."""
        if not request.host:
            return None
        try:
            host = domains.parse_host(request.host)
        except InvalidInput:
            raise InvalidInput(
                "the Host header is not a valid host name.",
                "Send the store's domain, e.g. Host: shop.example.com.",
            ) from None
        if self.custom_domains:
            store = domains.store_of_host(master, host)
            if store is not None:
                return Match(store)
        if self._regex is not None and (found := self._regex.fullmatch(host)):
            return Match(_by_slug(master, found["slug"], f"host {host!r}"))
        return None


def _host_regex(pattern: str) -> re.Pattern[str]:
    lowered = pattern.strip().lower()
    if lowered.count("{slug}") != 1 or not lowered.startswith("{slug}."):
        raise ConfigurationError(
            f"the tenant host pattern {pattern!r} must start with one '{{slug}}.' label.",
            "e.g. TENANTRY_TENANT_HOST_PATTERN={slug}.example.com",
        )
    return re.compile(_SLUG + re.escape(lowered.removeprefix("{slug}")))


class ByHeader:
    """A header naming the store's slug (``X-Tenant`` by default)."""

    name = "header"

    def __init__(self, header: str = "X-Tenant") -> None:
        self.header = header

    def cache_key(self, request: RequestFacts) -> Hashable:
        """What this strategy's answer depends on: the header's value."""
        return request.headers.get(self.header.lower(), "").strip().lower()

    def find(self, master: Session, request: RequestFacts) -> Match | None:
        """The store the header names."""
        value = request.headers.get(self.header.lower(), "").strip()
        if not value:
            return None
        return Match(_by_slug(master, value.lower(), f"header {self.header}"))


class ByPathPrefix:
    """A path starting ``/t/{slug}/`` (the prefix is stripped for the app behind)."""

    name = "path"

    def __init__(self, prefix: str = "/t/") -> None:
        self.prefix = "/" + prefix.strip("/") + "/"
        self._regex = re.compile(re.escape(self.prefix) + _SLUG + r"(?=/|$)")

    def cache_key(self, request: RequestFacts) -> Hashable:
        """What this strategy's answer depends on: the prefix and slug the path starts with."""
        found = self._regex.match(request.path)
        return None if found is None else found.group(0)

    def find(self, master: Session, request: RequestFacts) -> Match | None:
        """The store the path names."""
        found = self._regex.match(request.path)
        if found is None:
            return None
        return Match(_by_slug(master, found["slug"], "path"), found.group(0))


class ByApiKey:
    """A store API key (``Authorization: Bearer tnt_…`` or ``X-API-Key``), checked as the
    HTTP API checks keys; a key of no store (admin, app) names none."""

    name = "api-key"

    def find(self, master: Session, request: RequestFacts) -> Match | None:
        """The store of the presented key; unknown or revoked keys are refused (401)."""
        presented = request.headers.get("x-api-key", "")
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and value:
            presented = value
        if not presented:
            return None
        key = apikeys.authenticate(master, presented)
        if key.store_id is None or apikeys.Scope.STORE.value not in key.scopes:
            return None
        store = master.get(Store, key.store_id)
        return Match(store) if store is not None else None
