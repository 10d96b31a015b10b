"""A short-lived memory of which store requests name, so a resolved request does not read
master twice (once to resolve, once to open its session).

Entries live ``ttl`` seconds. Whatever this process changes that could change an answer
(suspending or resuming a store, claiming, verifying or dropping a domain through
``app.stores``) clears the cache at once; a change made by another process is seen within
``ttl``. Session opens still read the store's row, so a suspended store's session is
refused at once whatever the cache holds.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass

#: How long a resolution is remembered by default, in seconds.
DEFAULT_TTL_S = 5.0

#: The most answers kept (least recently stored dropped first): one per host or slug.
MAX_ENTRIES = 10_000


@dataclass(frozen=True)
class CachedMatch:
    """What resolution found, without the request's own path."""

    id: uuid.UUID
    slug: str
    name: str
    via: str
    prefix: str


class ResolutionCache:
    """Answers of resolvers, by what each request's strategies looked at."""

    def __init__(self, ttl: float = DEFAULT_TTL_S) -> None:
        if ttl < 0:
            raise ValueError(f"the resolution cache ttl must be 0 or more seconds, not {ttl}.")
        self.ttl = ttl
        self._entries: OrderedDict[Hashable, tuple[float, CachedMatch]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> CachedMatch | None:
        """The answer remembered for ``key``, if still fresh."""
        if self.ttl <= 0:
            return None
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            if found[0] <= time.monotonic():
                del self._entries[key]
                return None
            return found[1]

    def put(self, key: Hashable, match: CachedMatch) -> None:
        """Remember ``match`` for ``key`` for ``ttl`` seconds (nothing when ``ttl`` is 0)."""
        if self.ttl <= 0:
            return
        with self._lock:
            self._entries[key] = (time.monotonic() + self.ttl, match)
            self._entries.move_to_end(key)
            while len(self._entries) > MAX_ENTRIES:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forget every answer (a store or domain changed in this process)."""
        with self._lock:
            self._entries.clear()
