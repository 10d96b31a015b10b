"""The client-portal example (seed 003) against a real billing database on each backend:
the issuing app's invoices with milestones and payments, a Stripe PaymentIntent attached
through the portal and settled by Stripe's webhook through tenantry's API, and the start-up
refusal (non-zero exit, the reason on stderr) when billing is not at the expected revision."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import URL
from typer.testing import CliRunner

from tenantry import Tenantry
from tenantry.api.app import create_app as create_api
from tenantry.cli.main import app as cli
from tenantry.db.engines import make_engine
from tenantry.db.schemas import billing_schema
from tenantry.operations import process_webhooks
from tenantry.operations.dispatch import InProcessDispatcher
from tenantry.runtime import Platform
from tenantry.services import schema_ops
from tenantry.services.billing.invoices import MilestoneInput
from tests import stripe_events
from tests.conftest import DbFactory
from tests.helpers import free_port
from tests.platform_fixtures import backend_platform

__all__ = ["backend_platform"]

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "client_portal"))
from client_portal.app import EXPECTED_BILLING_REVISION, create_app

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "client_portal"

ISSUER = "ignitebd"  # the app that issues the invoices the portal shows
SECRET = "whsec_" + "portal" * 4


@pytest.fixture
def app(backend_platform: Platform) -> Iterator[Tenantry]:
    """The public API over an installation whose billing database is on the backend."""
    opened = Tenantry(backend_platform, inline=True)
    yield opened
    opened.close()


def portal_env(**changes: str) -> dict[str, str]:
    """The environment the portal runs in: this test's settings, the example importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(EXAMPLE), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep
    )
    return {**env, **changes}


def run_portal(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "client_portal", *args],
        env=portal_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def issue(app: Tenantry, customer: uuid.UUID, number: str, **fields: Any) -> uuid.UUID:
    invoice = app.billing.service.create_invoice(
        ISSUER, customer, invoice_number=number, currency="usd", **fields
    )
    return invoice.id


def test_invoices_milestones_and_a_stripe_payment(app: Tenantry) -> None:
    acme = app.billing.customers.create("acme-1", name="Acme", app_id=ISSUER)
    other = app.billing.customers.create("globex-9", name="Globex", app_id=ISSUER)
    milestones = [MilestoneInput("Kick-off", 40_000), MilestoneInput("Delivery", 60_000)]
    q1 = issue(app, acme.id, "INV-2025-001", milestones=milestones, finalize=True)
    issue(app, acme.id, "INV-2025-002", amount_minor=5_000)  # a draft: not shown
    foreign = issue(app, other.id, "INV-2025-003", amount_minor=7_000, finalize=True)
    portal = TestClient(create_app(app, ISSUER))

    listed = portal.get("/customers/acme-1/invoices")
    assert listed.status_code == 200
    [shown] = listed.json()
    assert (shown["number"], shown["status"], shown["amount_minor"]) == (
        "INV-2025-001",
        "open",
        100_000,
    )
    assert [(m["name"], m["amount_minor"], m["status"]) for m in shown["milestones"]] == [
        ("Kick-off", 40_000, "pending"),
        ("Delivery", 60_000, "pending"),
    ]
    assert shown["payments"] == []
    assert portal.get("/customers/nobody/invoices").status_code == 404

    pay = f"/customers/acme-1/invoices/{q1}/payment-intent"
    intent = "pi_3Nx" + uuid.uuid4().hex[:16]
    assert portal.post(pay, json={"payment_intent_id": "card 4242"}).status_code == 400
    taken = portal.post(
        f"/customers/acme-1/invoices/{foreign}/payment-intent", json={"payment_intent_id": intent}
    )
    assert taken.status_code == 404  # another customer's invoice
    attached = portal.post(pay, json={"payment_intent_id": intent})
    assert attached.status_code == 200, attached.text
    assert attached.json()["payment_intent_id"] == intent
    assert portal.post(pay, json={"payment_intent_id": intent}).status_code == 200  # again: same
    other_intent = portal.post(pay, json={"payment_intent_id": "pi_3Nyother000000"})
    assert other_intent.status_code == 409
    assert "already has PaymentIntent" in other_intent.json()["error"]["message"]

    # Stripe reports the intent succeeded: tenantry's webhook endpoint stores the event, the
    # processor applies it, and the portal shows the payment and the settled invoice.
    app.billing.service.add_webhook_secret(ISSUER, "stripe", SECRET)
    event = {
        "id": f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "type": "payment_intent.succeeded",
        "created": int(time.time()),
        "data": {
            "object": {
                "id": intent,
                "object": "payment_intent",
                "amount": 100_000,
                "amount_received": 100_000,
                "currency": "usd",
                "status": "succeeded",
                "metadata": {},
                "customer": None,
            }
        },
    }
    body, headers = stripe_events.signed(event, SECRET)
    dispatcher = InProcessDispatcher(app.settings)
    with TestClient(create_api(app.settings, dispatcher=dispatcher)) as api:
        received = api.post(f"/webhooks/stripe/{ISSUER}", content=body, headers=headers)
        assert received.status_code == 200, received.text
    dispatcher.close()
    while process_webhooks.process_pending(app.platform.billing_sessions):
        pass

    [paid] = portal.get("/customers/acme-1/invoices").json()
    assert (paid["status"], paid["amount_paid_minor"]) == ("paid", 100_000)
    assert [m["status"] for m in paid["milestones"]] == ["paid", "paid"]
    assert [(p["amount_minor"], p["status"], p["processor"]) for p in paid["payments"]] == [
        (100_000, "succeeded", "stripe")
    ]
    settled = portal.post(pay, json={"payment_intent_id": "pi_3Nzanother0000"})
    assert settled.status_code == 409


def test_serves_as_a_process(app: Tenantry) -> None:
    customer = app.billing.customers.create("acme-1", app_id=ISSUER)
    issue(app, customer.id, "INV-1", amount_minor=1_000, finalize=True)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "client_portal"],
        env=portal_env(PORT=str(port), PORTAL_BILLING_APP=ISSUER),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while not _up(base):
            assert server.poll() is None, server.communicate()[1]
            assert time.monotonic() < deadline, "the portal did not serve within 30 s"
            time.sleep(0.1)
        invoices = httpx.get(f"{base}/customers/acme-1/invoices", timeout=10).json()
        assert [(i["number"], i["amount_minor"]) for i in invoices] == [("INV-1", 1_000)]
    finally:
        server.terminate()
        out, _ = server.communicate(timeout=30)
    assert f"billing at {EXPECTED_BILLING_REVISION}" in out


def _up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_starts_only_on_the_billing_revision_it_expects(
    app: Tenantry, new_database: DbFactory
) -> None:
    url = app.settings.billing_url.render_as_string(hide_password=False)
    ok = run_portal("check", DATABASE_URL_BILLING=url)
    assert ok.returncode == 0, ok.stderr
    assert f"billing at {EXPECTED_BILLING_REVISION} (owner tenantry)" in ok.stdout

    # A billing database its owner has not migrated to the portal's revision yet.
    behind = older_billing(new_database)
    shown = behind.render_as_string(hide_password=False)
    refused = run_portal("check", DATABASE_URL_BILLING=shown)
    assert refused.returncode == 2
    assert f"is at revision 0003; 'client-portal' was written for {EXPECTED_BILLING_REVISION}" in (
        refused.stderr
    )
    assert "never migrates: the owner app 'tenantry' migrates it" in refused.stderr
    assert refused.stdout == ""
    served = run_portal(DATABASE_URL_BILLING=shown, PORTAL_BILLING_APP=ISSUER)
    assert served.returncode == 2
    assert "refusing to start" in served.stderr
    if behind.password:
        assert behind.password not in refused.stderr

    # The master database given as billing: refused as the wrong database.
    master = app.settings.master_url.render_as_string(hide_password=False)
    wrong = run_portal("check", DATABASE_URL_BILLING=master)
    assert wrong.returncode == 2
    assert "a master database" in wrong.stderr

    # The portal is a consumer: tenantry refuses to migrate billing as client-portal.
    migrated = CliRunner().invoke(
        cli,
        ["db", "migrate", "--role", "billing", "--url", shown, "--as-app", "client-portal"],
    )
    assert migrated.exit_code != 0
    assert "consumer of the billing schema" in migrated.output


def older_billing(new_database: DbFactory) -> URL:
    """A billing database at revision 0003, on ``backend``."""
    url = new_database("oldbilling")
    engine = make_engine(url)
    with engine.begin() as conn:
        schema_ops.migrate(
            conn, billing_schema(), "old", target="0003", acting_app="tenantry", owner="tenantry"
        )
    engine.dispose()
    return url
