"""Billing set up for console tests as a user would: a signing secret added with the CLI, and
Stripe events delivered, signed, to the running server's webhook receiver."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import time
import uuid
from typing import Any

import httpx

from tests.console.conftest import Console

SECRET = "whsec_console_" + "x" * 24


def add_secret(console: Console, app_id: str) -> None:
    """``tenantry billing secrets add APP --processor stripe``."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tenantry",
            "billing",
            "secrets",
            "add",
            app_id,
            "--processor",
            "stripe",
            "--secret",
            SECRET,
        ],
        env=console.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def subscription_event(external_customer_id: str) -> dict[str, Any]:
    """A subscription created for the app's customer ``external_customer_id``."""
    now = int(time.time())
    return {
        "id": f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "type": "customer.subscription.created",
        "created": now,
        "data": {
            "object": {
                "id": f"sub_{uuid.uuid4().hex[:10]}",
                "object": "subscription",
                "status": "active",
                "customer": "cus_console",
                "metadata": {"external_customer_id": external_customer_id, "plan_code": "pro"},
                "current_period_start": now,
                "current_period_end": now + 2_592_000,
                "cancel_at_period_end": False,
                "items": {"data": []},
            }
        },
    }


def deliver(console: Console, app_id: str, event: dict[str, Any]) -> None:
    """POST the event, signed as Stripe signs, to ``/webhooks/stripe/APP``."""
    body = json.dumps(event).encode()
    t = int(time.time())
    mac = hmac.new(SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    with httpx.Client(base_url=console.base, timeout=30) as http:
        answer = http.post(
            f"/webhooks/stripe/{app_id}",
            content=body,
            headers={"Stripe-Signature": f"t={t},v1={mac}", "Content-Type": "application/json"},
        )
    assert answer.status_code == 200, answer.text
