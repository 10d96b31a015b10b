"""GDPR erasure in a store's own database (the ``store`` tenant schema): a customer's
personal data removed, their orders kept for the books but anonymised.

The customer row is deleted; every order placed by them (by customer id, or as a guest with
the same email) keeps its number, items and amounts, and loses its email and both addresses.
The caller runs it in one transaction on the store's database and audits it without the
personal data (only ids and counts).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, delete, func, or_, select
from sqlalchemy.orm import Session

from tenantry.db.tenant.store.models import Customer, Order
from tenantry.errors import InvalidInput, NotFound

#: What an anonymised order's email becomes: reserved by RFC 2606, so it is never delivered,
#: and made of the order's id, never of anything the customer gave.
ERASED_DOMAIN = "erased.invalid"


@dataclass
class Erasure:
    """What was erased: never the personal data itself."""

    customer_id: str | None
    customer_deleted: bool
    orders_anonymised: int
    order_ids: list[str] = field(default_factory=list)


def find_customer(
    session: Session, *, email: str | None, customer_id: str | None
) -> Customer | None:
    """The customer with ``email`` (any case) or id ``customer_id``; None when there is none."""
    if (email is None) == (customer_id is None):
        raise InvalidInput("say which customer.", "Pass exactly one of --email E or --id ID.")
    if customer_id is not None:
        try:
            wanted = uuid.UUID(customer_id)
        except ValueError:
            raise InvalidInput(
                f"--id {customer_id!r} is not a customer id.", "A customer id is a UUID."
            ) from None
        return session.get(Customer, wanted)
    assert email is not None
    return session.scalar(select(Customer).where(func.lower(Customer.email) == email.lower()))


def erase(session: Session, *, email: str | None, customer_id: str | None) -> Erasure:
    """Delete the customer and anonymise their orders in ``session`` (the caller commits).

    :class:`NotFound` when neither a customer nor an order matches.
    """
    customer = find_customer(session, email=email, customer_id=customer_id)
    emails = {e.lower() for e in (email, customer.email if customer else None) if e}
    who: list[ColumnElement[bool]] = [func.lower(Order.email).in_(emails)] if emails else []
    if customer is not None:
        who.append(Order.customer_id == customer.id)
    orders = list(session.scalars(select(Order).where(or_(*who)))) if who else []
    if customer is None and not orders:
        said = f"email {email!r}" if email is not None else f"id {customer_id!r}"
        raise NotFound(
            f"no customer or order with {said} in this store's database; nothing was changed.",
            "Check the address (or id) with the store's owner.",
        )
    for order in orders:
        order.email = f"erased-{order.id.hex[:16]}@{ERASED_DOMAIN}"
        order.shipping_address = {}
        order.billing_address = {}
        order.customer_id = None
    result = Erasure(
        customer_id=str(customer.id) if customer is not None else None,
        customer_deleted=customer is not None,
        orders_anonymised=len(orders),
        order_ids=[str(o.id) for o in orders],
    )
    session.flush()
    if customer is not None:
        session.execute(delete(Customer).where(Customer.id == customer.id))
    return result
