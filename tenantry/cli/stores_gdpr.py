"""``tenantry stores erase-customer``: GDPR erasure of one customer in a store's database
(registered on the ``stores`` group by :mod:`tenantry.cli.stores`)."""

from __future__ import annotations

import typer

from tenantry.cli.common import open_platform
from tenantry.cli.output import JSON_OPTION, confirm_or_exit, console, emit_json, reports_errors
from tenantry.errors import InvalidInput
from tenantry.operations import customer_erase
from tenantry.services.audit import cli_actor
from tenantry.settings import load_settings


@reports_errors
def erase_customer(
    slug: str = typer.Argument(..., help="The store (slug or id)."),
    email: str | None = typer.Option(None, "--email", help="The customer's email address."),
    customer_id: str | None = typer.Option(None, "--id", help="The customer's id."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Erase a customer from the store's database (GDPR): their customer row is deleted and
    their orders are kept but anonymised (email, shipping and billing address replaced).

    One transaction in the store's database; audited (ids and counts, never the personal
    data). A customer or email with nothing to erase is an error and changes nothing.
    """
    if (email is None) == (customer_id is None):
        raise InvalidInput("say which customer.", "Pass exactly one of --email E or --id ID.")
    if not yes:
        who = f"the customer with email {email}" if email is not None else f"customer {customer_id}"
        confirm_or_exit(
            f"Erase {who} from store {slug!r} (orders kept, anonymised)?",
            json_output,
            "Pass --yes to erase without asking.",
        )
    with open_platform(load_settings()) as platform:
        doc = customer_erase.erase_store_customer(
            platform, slug, email=email, customer_id=customer_id, actor=cli_actor()
        )
    if json_output:
        emit_json(doc)
        return
    deleted = "deleted the customer" if doc["customer_deleted"] else "no customer row"
    console.print(
        f"[green]✓[/] store {doc['store']}: {deleted}, "
        f"{doc['orders_anonymised']} order(s) anonymised"
    )
