"""Stripe events as tests send them: made here, independently of tenantry, and signed the way
Stripe signs (``Stripe-Signature: t=…,v1=HMAC-SHA256(secret, "t." + body)``)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from typing import Any


def stripe_headers(body: bytes, secret: str, *, at: int | None = None) -> dict[str, str]:
    """The headers Stripe sends with ``body``, signed with ``secret`` at ``at`` (now)."""
    t = int(time.time()) if at is None else at
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return {"Stripe-Signature": f"t={t},v1={mac}", "content-type": "application/json"}


def signed(
    payload: dict[str, Any], secret: str, *, at: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """``payload`` as a body, with the headers of a delivery signed with ``secret``."""
    body = json.dumps(payload).encode()
    return body, stripe_headers(body, secret, at=at)


def subscription_created(
    external_customer_id: str,
    *,
    subscription: str | None = None,
    customer: str = "cus_test",
    plan_code: str | None = "pro",
) -> dict[str, Any]:
    """A ``customer.subscription.created`` event for the app's customer
    ``external_customer_id`` (a unique event id; a unique subscription id unless given)."""
    now = int(time.time())
    metadata = {"external_customer_id": external_customer_id}
    if plan_code is not None:
        metadata["plan_code"] = plan_code
    return {
        "id": f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "type": "customer.subscription.created",
        "created": now,
        "data": {
            "object": {
                "id": subscription or f"sub_{uuid.uuid4().hex[:10]}",
                "object": "subscription",
                "status": "active",
                "customer": customer,
                "metadata": metadata,
                "current_period_start": now,
                "current_period_end": now + 2_592_000,
                "cancel_at_period_end": False,
                "items": {"data": []},
            }
        },
    }
