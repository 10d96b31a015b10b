"""The drain and rebalance planner: placement's rules on every target, minimal rebalances."""

from __future__ import annotations

import itertools
import random
import uuid
from collections import deque

import pytest

from tenantry.db.master.models import DatabaseServer, Store
from tenantry.errors import InvalidInput
from tenantry.services.placement import Policy
from tenantry.services.rebalance_plan import (
    Fleet,
    allowed_skew,
    parse_skew,
    plan_drain,
    plan_rebalance,
)
from tenantry.services.server_loads import ServerLoad


def _server(
    name: str,
    *,
    region: str | None = None,
    max_tenants: int | None = None,
    accepting: bool = True,
) -> DatabaseServer:
    return DatabaseServer(
        id=uuid.uuid4(),
        name=name,
        region=region,
        tier=None,
        max_tenants=max_tenants,
        max_bytes=None,
        accepting=accepting,
        is_active=True,
    )


def _store(slug: str, *, region: str | None = None, size: int = 0) -> Store:
    return Store(
        id=uuid.uuid4(),
        slug=slug,
        residency_region=region,
        residency_tier=None,
        storage_used_bytes=size,
    )


def _fleet(layout: dict[DatabaseServer, list[Store]]) -> Fleet:
    return Fleet(
        [
            ServerLoad(s, len(on), sum(x.storage_used_bytes or 0 for x in on))
            for s, on in layout.items()
        ],
        {s.name: list(on) for s, on in layout.items()},
    )


def test_drain_spreads_stores_by_policy_within_capacity_and_residency() -> None:
    old = _server("old", region="eu", accepting=False)
    a = _server("a", region="eu", max_tenants=3)
    b = _server("b", region="eu")
    us = _server("us", region="us")
    on_old = [_store(f"s{i}", region="eu", size=i) for i in range(5)] + [
        _store("ap-only", region="ap"),
        _store("anywhere"),
    ]
    fleet = _fleet({old: on_old, a: [_store("a1")], b: [], us: []})

    plan = plan_drain(fleet, "old", Policy.LEAST_TENANTS)

    targets = {m.slug: m.target for m in plan.moves}
    assert set(targets) == {"s0", "s1", "s2", "s3", "s4", "anywhere"}
    assert all(targets[f"s{i}"] in ("a", "b") for i in range(5))  # never us: residency
    assert sum(1 for t in targets.values() if t == "a") <= 2  # a had 1 of 3
    assert all(m.source == "old" for m in plan.moves)
    (unplaced,) = plan.unplaced
    assert unplaced.slug == "ap-only"
    assert unplaced.requirement == "region ap"
    assert "a: region eu, the store requires ap" in unplaced.why
    assert "us: region us, the store requires ap" in unplaced.why


def test_drain_with_no_other_server_reports_every_store() -> None:
    only = _server("only", accepting=False)
    fleet = _fleet({only: [_store("x"), _store("y")]})
    plan = plan_drain(fleet, "only")
    assert plan.moves == []
    assert [u.slug for u in plan.unplaced] == ["x", "y"]


def _fewest_moves(counts: tuple[int, ...], skew: int) -> int:
    """Breadth-first search over store counts: the true minimum of single-store moves."""
    seen = {counts}
    queue = deque([(counts, 0)])
    while queue:
        state, depth = queue.popleft()
        if max(state) - min(state) <= skew:
            return depth
        for i, j in itertools.permutations(range(len(state)), 2):
            if state[i] == 0:
                continue
            nxt = list(state)
            nxt[i] -= 1
            nxt[j] += 1
            key = tuple(nxt)
            if key not in seen:
                seen.add(key)
                queue.append((key, depth + 1))
    raise AssertionError("unreachable")


@pytest.mark.parametrize("seed", range(40))
def test_rebalance_is_minimal_and_ends_within_the_skew(seed: int) -> None:
    rng = random.Random(seed)
    servers = [_server(f"s{i}") for i in range(rng.randint(2, 4))]
    layout = {s: [_store(f"{s.name}-{n}") for n in range(rng.randint(0, 7))] for s in servers}
    skew = rng.randint(0, 3)
    plan = plan_rebalance(_fleet(layout), skew)
    total = sum(len(v) for v in layout.values())
    # 0 is taken as 1 when the stores do not divide evenly: no placement does better.
    assert plan.allowed_skew == (max(skew, 1) if total % len(servers) else skew)
    assert plan.reached
    assert len(plan.moves) == _fewest_moves(
        tuple(len(v) for v in layout.values()), plan.allowed_skew
    )
    after = {s.name: len(on) for s, on in layout.items()}
    for move in plan.moves:
        after[move.source] -= 1
        after[move.target] += 1
    assert max(after.values()) - min(after.values()) == plan.skew_after <= plan.allowed_skew
    assert len({m.slug for m in plan.moves}) == len(plan.moves)  # no store moves twice


def test_rebalance_respects_residency_and_skips_closed_servers() -> None:
    eu1, eu2 = _server("eu1", region="eu"), _server("eu2", region="eu")
    us = _server("us", region="us")
    closed = _server("closed", accepting=False)
    layout = {
        eu1: [_store(f"e{i}", region="eu") for i in range(6)],
        eu2: [],
        us: [],
        closed: [_store(f"c{i}") for i in range(9)],
    }
    plan = plan_rebalance(_fleet(layout), 1)
    assert all(m.source == "eu1" and m.target == "eu2" for m in plan.moves)
    assert len(plan.moves) == 3
    assert not plan.reached  # us stays empty: nothing on eu1 may go there
    assert (plan.skew_before, plan.skew_after) == (6, 3)


def test_skew_is_a_count_or_a_share_of_the_average() -> None:
    fleet = _fleet({_server("a"): [_store(f"a{i}") for i in range(30)], _server("b"): []})
    assert parse_skew("2") == (2, False)
    assert allowed_skew(fleet, *parse_skew("10%")) == 1  # 10 % of 15, rounded down
    assert allowed_skew(fleet, *parse_skew("50%")) == 7
    assert allowed_skew(fleet, *parse_skew("0%")) == 1  # never below one store
    for bad in ("two", "-1", "5%%", ""):
        with pytest.raises(InvalidInput, match="--max-skew"):
            parse_skew(bad)
