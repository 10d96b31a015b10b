"""Custom domains of stores: claim a host, prove control of it, find the store of a host.

A claimed host never resolves until it is verified; verification itself (an HTTP or DNS
look-up) is :mod:`tenantry.operations.domain_verify`. Host names are kept in one form (lower
case, no port, no trailing dot) so resolution is a single indexed equality.
"""

from __future__ import annotations

import re
import secrets
import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from tenantry.db.master.models import Store, StoreDomain
from tenantry.db.savepoints import insert_in_savepoint
from tenantry.db.types import utcnow
from tenantry.errors import Conflict, InvalidInput, NotFound
from tenantry.services.audit import record

#: One DNS label: letters, digits and inner hyphens, at most 63 characters.
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
#: Where the verification token is served over HTTP, and the DNS name of its TXT record.
WELL_KNOWN_PATH = "/.well-known/tenantry/"
TXT_PREFIX = "_tenantry."


def parse_host(raw: str) -> str:
    """``raw`` (a Host header or a typed host name) in its stored form: lower case, without
    port or trailing dot; :class:`InvalidInput` for anything that is not a DNS host name
    (IP literals included: a store is served on a name)."""
    host = raw.strip().lower()
    if host.startswith("["):
        raise InvalidInput(f"{raw!r} is an IP address, not a host name.")
    name, sep, port = host.partition(":")
    if sep and not port.isdigit():
        raise InvalidInput(f"{raw!r} is not a valid host (the part after ':' must be a port).")
    name = name.removesuffix(".")
    labels = name.split(".")
    if (
        not name
        or len(name) > 253
        or not all(_LABEL.match(label) for label in labels)
        or labels[-1].isdigit()
    ):
        raise InvalidInput(
            f"{raw!r} is not a valid host name.",
            "Give a DNS name such as shop.example.com (letters, digits, hyphens and dots).",
        )
    return name


def add_domain(session: Session, store: Store, raw_host: str, *, actor: str) -> StoreDomain:
    """Claim ``raw_host`` for ``store`` (unverified, with a fresh token). A host already
    claimed by any store is a :class:`Conflict`."""
    host = parse_host(raw_host)
    domain = StoreDomain(
        store_id=store.id, host=host, token=secrets.token_hex(16), created_by=actor
    )
    refused = insert_in_savepoint(session, domain)
    if refused is not None:
        raise Conflict(
            f"the host {host!r} is already claimed by a store.",
            "Remove it from that store first (tenantry stores domains remove).",
        )
    _audit(session, actor, "store.domain_add", store.id, host)
    return domain


def list_domains(session: Session, store: Store) -> list[StoreDomain]:
    """The store's hosts, in the order they were claimed."""
    return list(
        session.scalars(
            select(StoreDomain)
            .where(StoreDomain.store_id == store.id)
            .order_by(StoreDomain.created_at, StoreDomain.host)
        )
    )


def get_domain(session: Session, store: Store, raw_host: str) -> StoreDomain:
    """The store's claim on ``raw_host``, or :class:`NotFound`."""
    host = parse_host(raw_host)
    domain = session.scalar(
        select(StoreDomain).where(StoreDomain.store_id == store.id, StoreDomain.host == host)
    )
    if domain is None:
        raise NotFound(
            f"store {store.slug!r} has no domain {host!r}.",
            f"List its domains: tenantry stores domains list {store.slug}.",
        )
    return domain


def mark_verified(session: Session, domain: StoreDomain, *, actor: str) -> None:
    """Record that control of the host was proven; from now on it resolves."""
    domain.verified_at = utcnow()
    _audit(session, actor, "store.domain_verify", domain.store_id, domain.host)


def remove_domain(session: Session, store: Store, raw_host: str, *, actor: str) -> None:
    """Forget the store's claim on ``raw_host``."""
    domain = get_domain(session, store, raw_host)
    session.delete(domain)
    _audit(session, actor, "store.domain_remove", store.id, domain.host)


def store_of_host(session: Session, host: str) -> Store | None:
    """The store whose *verified* domain is ``host`` (already in stored form), if any."""
    return session.scalar(
        select(Store)
        .join(StoreDomain, StoreDomain.store_id == Store.id)
        .where(StoreDomain.host == host, StoreDomain.verified_at.is_not(None))
    )


def _audit(session: Session, actor: str, action: str, store_id: uuid.UUID, host: str) -> None:
    record(
        session,
        actor=actor,
        action=action,
        target_type="store",
        target_id=str(store_id),
        store_id=store_id,
        details={"host": host},
    )
