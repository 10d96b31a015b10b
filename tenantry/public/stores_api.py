"""``app.stores``: registering, finding, suspending stores and their custom domains from
application code, one transaction per call (as the CLI's commands are)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from tenantry.db.master.models import Store, StoreDomain
from tenantry.operations import domain_verify, store_create
from tenantry.runtime import Platform
from tenantry.services import domains, stores


@dataclass(frozen=True)
class StoreInfo:
    """A store as master knows it (no connection details)."""

    id: uuid.UUID
    slug: str
    name: str
    plan: str
    database_status: str

    @classmethod
    def of(cls, store: Store) -> StoreInfo:
        """The snapshot of a store row."""
        return cls(store.id, store.slug, store.name, store.subscription_plan, store.database_status)


@dataclass(frozen=True)
class DomainInfo:
    """A host a store claims; it resolves only once ``verified_at`` is set."""

    host: str
    token: str
    verified_at: datetime | None

    @classmethod
    def of(cls, domain: StoreDomain) -> DomainInfo:
        """The snapshot of a domain row."""
        return cls(domain.host, domain.token, domain.verified_at)


class StoresApi:
    """Stores (tenants) of the platform."""

    def __init__(
        self, platform: Platform, actor: str, *, on_change: Callable[[], None] | None = None
    ) -> None:
        """``on_change`` runs after a change that may move a request to another store or
        refuse it (suspend, resume, domains): the app forgets its resolutions."""
        self._platform = platform
        self._actor = actor
        self._on_change = on_change or (lambda: None)

    def create(self, slug: str, name: str | None = None, *, plan: str = "free") -> StoreInfo:
        """Register store ``slug`` (and its platform billing customer); provision it next
        with ``app.provision(slug)``."""
        created = store_create.create(
            self._platform, slug=slug, name=name or slug, plan=plan, actor=self._actor
        )
        return self.get(created.id)

    def get(self, ref: str | uuid.UUID) -> StoreInfo:
        """The store with this slug or id (:class:`~tenantry.errors.NotFound` if none)."""
        with self._platform.sessions() as session:
            return StoreInfo.of(stores.get_store(session, ref))

    def all(
        self, *, status: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[StoreInfo]:
        """Stores, in slug order; only those in ``status`` (pending, provisioning, active,
        suspended or failed) when given."""
        with self._platform.sessions() as session:
            found, _total = stores.list_stores(session, status=status, limit=limit, offset=offset)
            return [StoreInfo.of(s) for s in found]

    def suspend(self, ref: str, *, reason: str = "") -> StoreInfo:
        """Refuse the store's traffic (sessions, resolution, the HTTP API) until resumed."""
        with self._platform.writer_sessions.begin() as session:
            store = stores.suspend_store(
                session, stores.get_store(session, ref), reason=reason, actor=self._actor
            )
            info = StoreInfo.of(store)
        self._on_change()
        self._platform.router.evict(info.id)
        return info

    def resume(self, ref: str) -> StoreInfo:
        """Serve a suspended store again."""
        with self._platform.writer_sessions.begin() as session:
            store = stores.resume_store(session, stores.get_store(session, ref), actor=self._actor)
            info = StoreInfo.of(store)
        self._on_change()
        return info

    def add_domain(self, ref: str, host: str) -> DomainInfo:
        """Claim ``host`` for the store; publish its token, then :meth:`verify_domain`."""
        with self._platform.writer_sessions.begin() as session:
            store = stores.get_store(session, ref)
            return DomainInfo.of(domains.add_domain(session, store, host, actor=self._actor))

    def domains(self, ref: str) -> list[DomainInfo]:
        """The store's claimed hosts, verified or not."""
        with self._platform.sessions() as session:
            store = stores.get_store(session, ref)
            return [DomainInfo.of(d) for d in domains.list_domains(session, store)]

    def verify_domain(
        self,
        ref: str,
        host: str,
        *,
        address: domain_verify.HostAddress | None = None,
    ) -> domain_verify.Verification:
        """Check the host's published token (HTTP, then DNS); verified hosts resolve.
        ``address`` maps the host to where its web server listens (default: the host's
        port 80 through the system resolver)."""
        try:
            return domain_verify.verify(
                self._platform, ref, host, actor=self._actor, address=address
            )
        finally:
            self._on_change()

    def remove_domain(self, ref: str, host: str) -> None:
        """Forget the store's claim on ``host``."""
        with self._platform.writer_sessions.begin() as session:
            domains.remove_domain(session, stores.get_store(session, ref), host, actor=self._actor)
        self._on_change()
