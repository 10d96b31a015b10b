"""Platform plans (seed 001 ``subscriptions``) and the limits each one sets."""

from __future__ import annotations

from dataclasses import dataclass

from tenantry.errors import InvalidInput


@dataclass(frozen=True)
class Plan:
    """A plan's prices (minor units) and limits; ``None`` means unlimited."""

    name: str
    price_monthly_minor: int
    price_annual_minor: int
    max_products: int | None
    max_orders_per_month: int | None
    max_storage_gb: int | None
    max_api_calls_per_month: int | None


PLANS: dict[str, Plan] = {
    p.name: p
    for p in (
        Plan("free", 0, 0, 100, 100, 1, 10_000),
        Plan("starter", 2_900, 29_000, 1_000, 1_000, 10, 100_000),
        Plan("professional", 9_900, 99_000, 10_000, 10_000, 100, 1_000_000),
        Plan("enterprise", 49_900, 499_000, None, None, None, None),
    )
}


def plan_named(name: str) -> Plan:
    """The plan called ``name``, or a clear error listing the plans."""
    try:
        return PLANS[name]
    except KeyError:
        raise InvalidInput(
            f"unknown plan {name!r}.", f"Choose one of: {', '.join(PLANS)}."
        ) from None
