"""Plans: what an app charges, how often."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from tenantry.db.billing.models import BillingInterval, BillingPlan
from tenantry.db.savepoints import insert_in_savepoint
from tenantry.errors import Conflict, InvalidInput, NotFound
from tenantry.services.billing import validation

_CODE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


def create_plan(
    session: Session,
    app_id: str,
    *,
    code: str,
    name: str,
    amount_minor: int,
    currency: str,
    interval: str = "month",
    trial_days: int = 0,
) -> BillingPlan:
    """Add a plan to the app (codes are unique per app)."""
    if not _CODE.fullmatch(code):
        raise InvalidInput(
            f"invalid plan code {code!r}.",
            "Use up to 64 lowercase letters, digits, '_', '.' or '-'.",
        )
    if interval not in {i.value for i in BillingInterval}:
        raise InvalidInput(f"invalid interval {interval!r}.", "Use month or year.")
    if not 0 <= trial_days <= validation.MAX_TRIAL_DAYS:
        raise InvalidInput(f"trial_days must be 0 to {validation.MAX_TRIAL_DAYS}.")
    taken = Conflict(f"plan {code!r} exists already.")
    if session.scalar(
        select(BillingPlan.id).where(BillingPlan.app_id == app_id, BillingPlan.code == code)
    ):
        raise taken
    validation.no_card_data(name, where="name")
    plan = BillingPlan(
        app_id=app_id,
        code=code,
        name=name,
        amount_minor=validation.amount(amount_minor),
        currency=validation.currency(currency),
        interval=interval,
        trial_days=trial_days,
    )
    if insert_in_savepoint(session, plan) is not None:  # created meanwhile by another
        raise taken
    return plan


def get_plan(session: Session, app_id: str, code: str) -> BillingPlan:
    """The app's plan ``code``."""
    plan = session.scalar(
        select(BillingPlan).where(BillingPlan.app_id == app_id, BillingPlan.code == code)
    )
    if plan is None:
        raise NotFound(f"no plan {code!r}.")
    return plan


def list_plans(session: Session, app_id: str) -> list[BillingPlan]:
    """The app's plans by code."""
    return list(
        session.scalars(
            select(BillingPlan).where(BillingPlan.app_id == app_id).order_by(BillingPlan.code)
        )
    )
