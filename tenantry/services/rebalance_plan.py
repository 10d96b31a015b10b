"""Which store goes where when a server is drained or the fleet rebalanced: the plans only.

Both plans follow placement's rules (:mod:`~tenantry.services.placement`): a target must be
active, accepting, have headroom and carry the store's residency labels. Each planned move
counts on its target at once, so a plan never sends more stores to a server than it may take.

**Skew** is the difference in store count between the fullest and the emptiest accepting
server (``--max-skew 2``); a percentage (``--max-skew 10%``) is that share of the average store
count per accepting server, rounded down, never below 1. Rebalancing moves one store at a time
from a fullest server to an emptiest one that may take it, until the skew is within bounds (or
no allowed move narrows it): with no residency or capacity in the way this is the fewest moves.

Reading the fleet (:func:`read_fleet`) only reads master, through the caller's session.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace

from sqlalchemy import select
from sqlalchemy.orm import Session

from tenantry.db.master.models import DatabaseServer, DatabaseStatus, IntegrationConfig, Store
from tenantry.errors import InvalidInput
from tenantry.services import placement
from tenantry.services.placement import Policy
from tenantry.services.server_loads import ServerLoad, server_loads


@dataclass(frozen=True)
class PlannedMove:
    """One store to move, from its server to another."""

    store_id: uuid.UUID
    slug: str
    source: str
    target: str

    def document(self) -> dict[str, str]:
        """The move as JSON."""
        return {"store": self.slug, "from": self.source, "to": self.target}


@dataclass(frozen=True)
class Unplaced:
    """A store no server may take, with what it requires and why each server was passed."""

    store_id: uuid.UUID
    slug: str
    requirement: str | None
    reasons: str

    @property
    def why(self) -> str:
        """The whole reason, for people."""
        need = f" (it requires {self.requirement})" if self.requirement else ""
        return f"no server can take store {self.slug}{need}: {self.reasons or 'no other server'}"

    def document(self) -> dict[str, str | None]:
        """The store and why it cannot move, as JSON."""
        return {"store": self.slug, "requirement": self.requirement, "why": self.why}


@dataclass(frozen=True)
class Fleet:
    """The registered servers with their loads, and the stores living on each."""

    loads: list[ServerLoad]
    stores: dict[str, list[Store]]


@dataclass(frozen=True)
class DrainPlan:
    """Where each store of a drained server goes; the stores that cannot go anywhere."""

    server: str
    moves: list[PlannedMove]
    unplaced: list[Unplaced]


@dataclass(frozen=True)
class RebalancePlan:
    """The moves that bring the accepting servers within the skew."""

    allowed_skew: int
    skew_before: int
    skew_after: int
    moves: list[PlannedMove]

    @property
    def reached(self) -> bool:
        """Whether the servers end within the allowed skew."""
        return self.skew_after <= self.allowed_skew


def read_fleet(session: Session) -> Fleet:
    """Every registered server's load, and the active stores whose database is on each."""
    servers = list(session.scalars(select(DatabaseServer).order_by(DatabaseServer.name)))
    names = {server.id: server.name for server in servers}
    rows = session.execute(
        select(Store, IntegrationConfig.database_server_id)
        .join(IntegrationConfig, IntegrationConfig.store_id == Store.id)
        .where(
            IntegrationConfig.is_active.is_(True),
            IntegrationConfig.database_server_id.is_not(None),
            Store.database_status == DatabaseStatus.ACTIVE,
        )
        .order_by(Store.slug)
    )
    stores: dict[str, list[Store]] = {server.name: [] for server in servers}
    for store, server_id in rows:
        if server_id in names:
            stores[names[server_id]].append(store)
    return Fleet(server_loads(session, servers), stores)


def plan_drain(fleet: Fleet, server: str, policy: Policy = Policy.LEAST_TENANTS) -> DrainPlan:
    """A target for every store on ``server``, by placement ``policy`` among the other
    servers (largest stores first, so they get the roomiest servers)."""
    loads = {load.server.name: load for load in fleet.loads if load.server.name != server}
    moves: list[PlannedMove] = []
    unplaced: list[Unplaced] = []
    ordered = sorted(fleet.stores.get(server, []), key=lambda s: (-_bytes(s), s.slug))
    for store in ordered:
        fitting = [load for load in loads.values() if placement.misfit(store, load) is None]
        if not fitting:
            reasons = "; ".join(
                f"{name}: {placement.misfit(store, load)}" for name, load in sorted(loads.items())
            )
            unplaced.append(Unplaced(store.id, store.slug, placement.requirement(store), reasons))
            continue
        best = min(fitting, key=lambda load: _rank(load, policy))
        loads[best.server.name] = _plus(best, store)
        moves.append(PlannedMove(store.id, store.slug, server, best.server.name))
    return DrainPlan(server, moves, unplaced)


def plan_rebalance(fleet: Fleet, max_skew: int) -> RebalancePlan:
    """The moves that bring the active, accepting servers within ``max_skew`` stores of each
    other (see the module doc); a skew of 0 with stores that do not divide evenly is taken
    as 1, the best any placement reaches."""
    loads = {
        load.server.name: load
        for load in fleet.loads
        if load.server.is_active and load.server.accepting
    }
    on = {name: list(fleet.stores.get(name, [])) for name in loads}
    before = _skew(loads.values())
    # Stores that do not divide evenly among the servers leave at least one of difference.
    total = sum(load.tenants for load in loads.values())
    max_skew = max(max_skew, 1 if loads and total % len(loads) else 0)
    moves: list[PlannedMove] = []
    while _skew(loads.values()) > max_skew:
        step = _narrowing_move(loads, on)
        if step is None:
            break  # residency or capacity allows no move that narrows the skew
        store, source, target = step
        on[source].remove(store)
        on[target].append(store)
        loads[source] = _plus(loads[source], store, sign=-1)
        loads[target] = _plus(loads[target], store)
        moves.append(PlannedMove(store.id, store.slug, source, target))
    return RebalancePlan(max_skew, before, _skew(loads.values()), moves)


def _narrowing_move(
    loads: dict[str, ServerLoad], on: dict[str, list[Store]]
) -> tuple[Store, str, str] | None:
    """A store to move from the fullest server that has one which may go to an emptier
    server holding at least two stores fewer (the emptiest such first); None if none."""
    sources = sorted(loads, key=lambda name: (-loads[name].tenants, name))
    targets = sorted(loads, key=lambda name: (loads[name].tenants, name))
    for source in sources:
        for target in targets:
            if loads[source].tenants - loads[target].tenants < 2:
                break
            movable = [s for s in on[source] if placement.misfit(s, loads[target]) is None]
            if movable:
                return min(movable, key=lambda s: (_bytes(s), s.slug)), source, target
    return None


def parse_skew(text: str) -> tuple[int, bool]:
    """``--max-skew``: a store count (``2``) or a percentage (``10%``); (value, is_percent)."""
    match = re.fullmatch(r"\s*(\d{1,6})\s*(%?)\s*", text)
    if match is None:
        raise InvalidInput(
            f"--max-skew {text!r} is neither a store count nor a percentage.",
            "Give a whole number of stores (e.g. 2) or a percentage of the average stores "
            "per server (e.g. 10%).",
        )
    return int(match.group(1)), bool(match.group(2))


def allowed_skew(fleet: Fleet, value: int, percent: bool) -> int:
    """The skew in stores that ``value`` (a count, or a percentage) allows for ``fleet``."""
    if not percent:
        return value
    counted = [
        load.tenants for load in fleet.loads if load.server.is_active and load.server.accepting
    ]
    average = sum(counted) / len(counted) if counted else 0
    return max(1, math.floor(average * value / 100))


def _skew(loads: Iterable[ServerLoad]) -> int:
    counts = [load.tenants for load in loads]
    return max(counts) - min(counts) if counts else 0


def _bytes(store: Store) -> int:
    return store.storage_used_bytes or 0


def _rank(load: ServerLoad, policy: Policy) -> tuple[int, int, str]:
    if policy is Policy.LEAST_BYTES:
        return (load.bytes, load.tenants, load.server.name)
    return (load.tenants, load.bytes, load.server.name)


def _plus(load: ServerLoad, store: Store, *, sign: int = 1) -> ServerLoad:
    return replace(load, tenants=load.tenants + sign, bytes=load.bytes + sign * _bytes(store))
