"""Finding the store of a request: ordered strategies, the first that names a store wins.

A store that does not exist is a 404, a suspended (or not yet provisioned) one a 403, a Host
header that is not a host name a 400: :func:`refusal_of` turns each into what the
middlewares answer, as JSON in tenantry's error shape.
"""

from __future__ import annotations

import uuid
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from tenantry.db.master.models import DatabaseStatus
from tenantry.errors import (
    DatabaseUnreachable,
    InvalidInput,
    LimitExceeded,
    NotFound,
    StoreUnavailable,
    TenantryError,
    Unauthorized,
    WritesBlocked,
)
from tenantry.runtime import Platform
from tenantry.services.routing import unavailable
from tenantry.tenancy.resolution_cache import CachedMatch, ResolutionCache
from tenantry.tenancy.strategies import ByHost, RequestFacts, Strategy

#: Where the middlewares put the resolved store: ``scope["state"][STATE_KEY]`` (ASGI, so
#: ``request.state.tenantry_store`` in Starlette) and ``environ[ENVIRON_KEY]`` (WSGI).
STATE_KEY = "tenantry_store"
ENVIRON_KEY = "tenantry.store"


@dataclass(frozen=True)
class ResolvedStore:
    """The store a request is for, how it was found, and the path left for the app."""

    id: uuid.UUID
    slug: str
    name: str
    via: str
    prefix: str
    path: str


@dataclass(frozen=True)
class Refusal:
    """What a middleware answers when resolution fails."""

    status: int
    type: str
    message: str
    hint: str | None
    retry_after: int | None = None

    def body(self) -> dict[str, dict[str, str | None]]:
        """The JSON body, in the shape tenantry's API uses for errors."""
        return {"error": {"type": self.type, "message": self.message, "hint": self.hint}}


class TenantResolver:
    """Resolves requests to stores with ``strategies``, in order."""

    def __init__(
        self,
        platform: Platform,
        strategies: Sequence[Strategy] = (),
        *,
        cache: ResolutionCache | None = None,
    ) -> None:
        pattern = platform.settings.tenant_host_pattern
        # By host alone unless told otherwise: a header or path names any store the client
        # likes, which an app must choose knowingly.
        chosen = list(strategies) or [ByHost()]
        self.strategies: list[Strategy] = [
            s.with_default(pattern) if isinstance(s, ByHost) else s for s in chosen
        ]
        self._platform = platform
        self.cache = cache if cache is not None else ResolutionCache()

    def _cache_key(self, request: RequestFacts) -> Hashable | None:
        keys: list[Hashable] = []
        for strategy in self.strategies:
            key_of = getattr(strategy, "cache_key", None)
            if key_of is None:  # its answer cannot be remembered (an API key may be revoked)
                return None
            keys.append((strategy.name, key_of(request)))
        return tuple(keys)

    def resolve(self, request: RequestFacts) -> ResolvedStore:
        """The active store ``request`` names. Raises :class:`NotFound` (no strategy named
        a store, or the store named does not exist), :class:`StoreUnavailable` (suspended,
        not provisioned), :class:`InvalidInput` (a garbage Host) or :class:`Unauthorized`
        (an unknown API key). Answers are remembered for the cache's ttl (see
        :mod:`~tenantry.tenancy.resolution_cache`)."""
        key = self._cache_key(request)
        cached = None if key is None else self.cache.get(key)
        if cached is not None:
            rest = request.path[len(cached.prefix) :] or "/"
            return ResolvedStore(
                cached.id, cached.slug, cached.name, cached.via, cached.prefix, rest
            )
        with self._platform.sessions() as master:
            for strategy in self.strategies:
                match = strategy.find(master, request)
                if match is None:
                    continue
                store = match.store
                if store.database_status != DatabaseStatus.ACTIVE:
                    raise unavailable(store)
                rest = request.path[len(match.prefix) :] or "/"
                if key is not None:
                    self.cache.put(
                        key,
                        CachedMatch(store.id, store.slug, store.name, strategy.name, match.prefix),
                    )
                return ResolvedStore(
                    store.id, store.slug, store.name, strategy.name, match.prefix, rest
                )
        tried = ", ".join(s.name for s in self.strategies)
        raise NotFound(
            "no store matches this request.",
            f"Name the store by one of: {tried} (e.g. its verified custom domain).",
        )


def refusal_of(exc: TenantryError) -> Refusal:
    """The answer to a request whose store could not be resolved, or whose tenant session
    was refused (writes blocked: 503 with ``retry_after``; a plan limit: 403)."""
    status = 500
    if isinstance(exc, NotFound):
        status = 404
    elif isinstance(exc, StoreUnavailable):
        status = 403
    elif isinstance(exc, InvalidInput):
        status = 400
    elif isinstance(exc, Unauthorized):
        status = 401
    elif isinstance(exc, DatabaseUnreachable):  # master is down: try again later
        status = 503
    elif isinstance(exc, WritesBlocked):  # a move or restore: the API's 503 too
        return Refusal(503, type(exc).__name__, exc.message, exc.hint, exc.retry_after)
    elif isinstance(exc, LimitExceeded):  # the plan's limit, as the API answers it
        status = 403
    return Refusal(status, type(exc).__name__, exc.message, exc.hint)
