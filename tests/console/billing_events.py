"""Billing set up for console tests as a user would: a signing secret added with the CLI, and
Stripe events delivered, signed, to the running server's webhook receiver."""

from __future__ import annotations

from typing import Any

import httpx

from tests.console.conftest import Console
from tests.stripe_events import signed, subscription_created

SECRET = "whsec_console_" + "x" * 24


def add_secret(console: Console, app_id: str) -> None:
    """``tenantry billing secrets add APP --processor stripe``."""
    console.cli("billing", "secrets", "add", app_id, "--processor", "stripe", "--secret", SECRET)


def subscription_event(external_customer_id: str) -> dict[str, Any]:
    """A subscription created for the app's customer ``external_customer_id``."""
    return subscription_created(external_customer_id, customer="cus_console")


def deliver(console: Console, app_id: str, event: dict[str, Any]) -> None:
    """POST the event, signed as Stripe signs, to ``/webhooks/stripe/APP``."""
    body, headers = signed(event, SECRET)
    with httpx.Client(base_url=console.base, timeout=30) as http:
        answer = http.post(
            f"/webhooks/stripe/{app_id}",
            content=body,
            headers=headers,
        )
    assert answer.status_code == 200, answer.text
