"""`tenantry billing`: signing secrets, webhook events (list, show, replay) and customers.

Events are ingested through the real service with bodies signed here, independently of
tenantry's own signing code.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from tenantry.cli import billing as billing_cli
from tenantry.db.billing.models import BillingPayment, BillingWebhook
from tenantry.runtime import Platform
from tenantry.services.billing import customers, webhook_intake
from tenantry.settings import load_settings
from tests.cli.conftest import Invoke, as_json
from tests.stripe_events import stripe_headers

APP = "acme"
SECRET = "whsec_" + "Zq8tK3vX" * 4
#: A terminal wide enough that table cells are not folded (Rich reads COLUMNS).
WIDE = {"COLUMNS": "200"}


@contextmanager
def _platform() -> Iterator[Platform]:
    platform = Platform.open(load_settings())
    try:
        yield platform
    finally:
        platform.close()


def _stripe_signature(body: bytes, secret: str = SECRET) -> str:
    """A ``Stripe-Signature`` header for ``body``: HMAC-SHA256 of ``"{t}.{body}"``."""
    return stripe_headers(body, secret)["Stripe-Signature"]


def _ingest(event: dict[str, Any], app_id: str = APP) -> webhook_intake.Ingested:
    body = json.dumps(event).encode()
    with _platform() as platform, platform.billing_sessions() as session:
        stored = webhook_intake.ingest(
            session,
            platform.box,
            processor="stripe",
            app_id=app_id,
            body=body,
            signature=_stripe_signature(body),
        )
        session.commit()  # the caller commits before answering 2xx
    return stored


def _stored_raw(event: dict[str, Any], app_id: str = APP) -> BillingWebhook:
    """A row as a version that did not read events at ingestion stored it."""
    row = BillingWebhook(
        app_id=app_id,
        processor="stripe",
        event_id=event["id"],
        event_type=event["type"],
        payload=json.dumps(event),
    )
    with _platform() as platform, platform.billing_sessions.begin() as session:
        session.add(row)
    return row


def _payment_succeeded(event_id: str, intent_id: str, amount: int = 4200) -> dict[str, Any]:
    return {
        "id": event_id,
        "object": "event",
        "type": "payment_intent.succeeded",
        "created": int(time.time()),
        "data": {
            "object": {
                "id": intent_id,
                "object": "payment_intent",
                "amount": amount,
                "amount_received": amount,
                "currency": "usd",
                "status": "succeeded",
                "metadata": {"app_id": APP},
            }
        },
    }


def _add_secret(cli: Invoke) -> dict[str, Any]:
    added = cli("billing", "secrets", "add", APP, "--processor", "stripe", "--secret", SECRET)
    assert added.exit_code == 0, added.output
    listed = as_json(cli("billing", "secrets", "list", "--app", APP, "--json"))
    doc: dict[str, Any] = listed["items"][0]
    return doc


def test_secrets_are_never_shown(cli: Invoke, tmp_path: Path) -> None:
    assert cli("init").exit_code == 0
    outputs: list[str] = []

    def run(*args: str) -> Any:
        result = cli(*args)
        outputs.extend((result.output, result.stderr))
        return result

    added = run(
        "billing", "secrets", "add", APP, "--processor", "stripe", "--secret", SECRET, "--json"
    )
    assert added.exit_code == 0, added.output
    doc = as_json(added)
    assert (doc["app_id"], doc["processor"], doc["hint"], doc["active"]) == (
        APP,
        "stripe",
        SECRET[-4:],
        True,
    )
    human = run("billing", "secrets", "add", "globex", "--processor", "tilled", "--secret", SECRET)
    assert human.exit_code == 0, human.output
    assert f"…{SECRET[-4:]}" in human.stdout

    everything = as_json(run("billing", "secrets", "list", "--json"))["items"]
    assert {(s["app_id"], s["processor"]) for s in everything} == {
        (APP, "stripe"),
        ("globex", "tilled"),
    }
    only = as_json(run("billing", "secrets", "list", "--app", APP, "--json"))["items"]
    assert [s["id"] for s in only] == [doc["id"]]
    assert run("billing", "secrets", "list").exit_code == 0

    retired = run("billing", "secrets", "retire", doc["id"], "--json")
    assert retired.exit_code == 0, retired.output
    assert as_json(retired)["active"] is False
    assert as_json(retired)["retired_at"] is not None
    again = run("billing", "secrets", "retire", doc["id"])  # idempotent
    assert again.exit_code == 0, again.output
    assert "retired" in again.stdout
    listed = as_json(run("billing", "secrets", "list", "--app", APP, "--json"))["items"]
    assert listed[0]["active"] is False

    unknown = run("billing", "secrets", "retire", "not-a-secret-id", "--json")
    assert unknown.exit_code == 1
    assert as_json(unknown)["error"]["type"] == "NotFound"
    short = run("billing", "secrets", "add", APP, "--processor", "stripe", "--secret", "abc")
    assert short.exit_code == 2
    bad_processor = run(
        "billing", "secrets", "add", APP, "--processor", "paypal", "--secret", SECRET
    )
    assert bad_processor.exit_code == 2

    assert all(SECRET not in text for text in outputs)
    assert all(SECRET[:-4] not in text for text in outputs)
    # Stored encrypted: no file of the installation holds it in clear.
    for path in (tmp_path / "data").rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_received_event_is_applied_by_replay_process(cli: Invoke) -> None:
    assert cli("init").exit_code == 0
    _add_secret(cli)
    stored = _ingest(_payment_succeeded("evt_paid_1", "pi_paid_1"))
    assert (stored.duplicate, stored.status) == (False, "received")

    listed = cli("billing", "webhooks", "list", "--json")
    assert listed.exit_code == 0, listed.output
    items = as_json(listed)["items"]
    assert len(items) == 1
    event = items[0]
    assert event["id"] == str(stored.id)
    assert (event["processor"], event["app_id"], event["event_id"]) == ("stripe", APP, "evt_paid_1")
    assert (event["event_type"], event["status"], event["attempts"]) == (
        "payment_intent.succeeded",
        "received",
        0,
    )
    assert "payload" not in event
    assert (
        as_json(cli("billing", "webhooks", "list", "--status", "failed", "--json"))["items"] == []
    )
    assert as_json(cli("billing", "webhooks", "list", "--app", "globex", "--json"))["items"] == []
    human = cli("billing", "webhooks", "list", env=WIDE)
    assert human.exit_code == 0
    assert "received" in human.stdout
    assert "pi_paid_1" not in human.stdout  # the payload is not in the table

    shown = as_json(cli("billing", "webhooks", "show", "evt_paid_1", "--json"))
    assert shown["id"] == str(stored.id)
    assert json.loads(shown["payload"])["data"]["object"]["id"] == "pi_paid_1"
    shown_human = cli("billing", "webhooks", "show", str(stored.id), env=WIDE)
    assert shown_human.exit_code == 0
    assert "pi_paid_1" in shown_human.stdout
    missing = cli("billing", "webhooks", "show", "evt_nope", "--json")
    assert missing.exit_code == 1
    assert as_json(missing)["error"]["type"] == "NotFound"

    replayed = cli("billing", "webhooks", "replay", "evt_paid_1", "--process", "--json")
    assert replayed.exit_code == 0, replayed.output
    doc = as_json(replayed)
    assert (doc["replayed"], doc["handled"]) == (1, 1)
    [outcome] = doc["events"]
    assert (outcome["status"], outcome["attempts"]) == ("processed", 1)
    assert "pi_paid_1" in outcome["result"]
    assert outcome["processed_at"] is not None

    # Applying it again changes nothing: still one payment.
    again = cli("billing", "webhooks", "replay", str(stored.id), "--process", env=WIDE)
    assert again.exit_code == 0, again.output
    assert "processed" in again.stdout
    with _platform() as platform, platform.billing_sessions() as session:
        payments = list(session.scalars(select(BillingPayment)))
    assert [(p.processor_payment_id, p.status, p.amount_minor) for p in payments] == [
        ("pi_paid_1", "succeeded", 4200)
    ]
    final = as_json(cli("billing", "webhooks", "show", "evt_paid_1", "--json"))
    assert (final["status"], final["attempts"]) == ("processed", 2)


def test_failed_event_is_queued_again_by_replay_failed(cli: Invoke) -> None:
    assert cli("init").exit_code == 0
    _add_secret(cli)
    # Ingestion now refuses what the adapter cannot read; a row an earlier version stored
    # (its data is not an object) fails when applied.
    bad = _stored_raw(
        {
            "id": "evt_bad_1",
            "type": "payment_intent.succeeded",
            "created": int(time.time()),
            "data": "not an object",
        }
    )
    good = _ingest(_payment_succeeded("evt_ok_1", "pi_ok_1"))

    processed = cli("billing", "webhooks", "replay", "evt_bad_1", "--process", "--json")
    assert processed.exit_code == 0, processed.output
    doc = as_json(processed)
    assert doc["handled"] == 2  # everything due, the good event included
    [outcome] = doc["events"]
    assert outcome["id"] == str(bad.id)
    assert outcome["status"] == "failed"

    failed = as_json(cli("billing", "webhooks", "list", "--status", "failed", "--json"))["items"]
    assert [e["id"] for e in failed] == [str(bad.id)]
    assert failed[0]["attempts"] == 1
    assert "data.object" in failed[0]["last_error"]
    assert failed[0]["next_attempt_at"] is None  # unreadable: never retried by itself
    ok = as_json(cli("billing", "webhooks", "show", str(good.id), "--json"))
    assert ok["status"] == "processed"
    human = cli("billing", "webhooks", "list", "--status", "failed", env=WIDE)
    assert "failed" in human.stdout
    assert "data.object" in human.stdout

    usage = cli("billing", "webhooks", "replay", "evt_bad_1", "--failed", "--json")
    assert usage.exit_code == 2
    assert as_json(usage)["error"]["type"] == "InvalidInput"
    assert cli("billing", "webhooks", "replay").exit_code == 2
    other_app = as_json(
        cli("billing", "webhooks", "replay", "--failed", "--app", "globex", "--json")
    )
    assert other_app["replayed"] == 0

    queued = cli("billing", "webhooks", "replay", "--failed", "--json")
    assert queued.exit_code == 0, queued.output
    assert as_json(queued) == {"replayed": 1, "ids": [str(bad.id)]}
    received = as_json(cli("billing", "webhooks", "list", "--status", "received", "--json"))
    [event] = received["items"]
    assert (event["id"], event["attempts"], event["last_error"]) == (str(bad.id), 1, None)
    assert (
        as_json(cli("billing", "webhooks", "list", "--status", "failed", "--json"))["items"] == []
    )

    retried = as_json(cli("billing", "webhooks", "replay", "--failed", "--process", "--json"))
    assert retried["replayed"] == 0
    assert retried["handled"] == 1  # the queued event, applied (and failing) again
    again = as_json(cli("billing", "webhooks", "show", "evt_bad_1", "--json"))
    assert (again["status"], again["attempts"]) == ("failed", 2)


def test_customers_list(cli: Invoke) -> None:
    assert cli("init").exit_code == 0
    assert as_json(cli("billing", "customers", "list", APP, "--json"))["items"] == []
    with _platform() as platform, platform.billing_sessions.begin() as session:
        for n in range(3):
            customers.create_customer(session, APP, f"c{n}@example.com", f"C {n}", f"cust-{n}")
        customers.create_customer(session, "globex", None, None, "other")
    listed = cli("billing", "customers", "list", APP, "--json")
    assert listed.exit_code == 0, listed.output
    doc = as_json(listed)
    assert doc["total"] == 3
    assert [c["external_customer_id"] for c in doc["items"]] == ["cust-0", "cust-1", "cust-2"]
    page = as_json(
        cli("billing", "customers", "list", APP, "--limit", "1", "--offset", "1", "--json")
    )
    assert [c["email"] for c in page["items"]] == ["c1@example.com"]
    assert (page["total"], page["limit"], page["offset"]) == (3, 1, 1)
    human = cli("billing", "customers", "list", APP, env=WIDE)
    assert human.exit_code == 0
    assert "cust-2" in human.stdout
    assert "other" not in human.stdout


def test_replay_process_gives_up_when_the_database_stays_busy(
    cli: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process holds billing's write lock (a real SQLite lock) from the moment the
    replay is recorded: processing gives up after its retries, says so, and loses nothing."""
    assert cli("init").exit_code == 0
    _add_secret(cli)
    stored = _ingest(_payment_succeeded("evt_busy_1", "pi_busy_1"))
    billing_file = str(load_settings().billing_url.database)
    monkeypatch.setenv("TENANTRY_SQLITE_BUSY_TIMEOUT_MS", "50")
    monkeypatch.setattr(billing_cli, "BUSY_PAUSE_S", 0.0)
    holder = sqlite3.connect(billing_file, isolation_level=None)
    replay_flushed = False

    def note_the_replay(session: Session, _context: object) -> None:
        nonlocal replay_flushed
        replay_flushed |= any(isinstance(row, BillingWebhook) for row in session.dirty)

    def lock_once_it_commits(_session: Session) -> None:
        if replay_flushed and not holder.in_transaction:
            holder.execute("BEGIN IMMEDIATE")

    event.listen(Session, "after_flush", note_the_replay)
    event.listen(Session, "after_commit", lock_once_it_commits)
    try:
        replayed = cli("billing", "webhooks", "replay", "evt_busy_1", "--process", "--json")
    finally:
        event.remove(Session, "after_flush", note_the_replay)
        event.remove(Session, "after_commit", lock_once_it_commits)
        if holder.in_transaction:
            holder.execute("ROLLBACK")
        holder.close()
    assert replayed.exit_code == 0, replayed.output
    doc = as_json(replayed)
    assert (doc["replayed"], doc["handled"], doc["stopped_busy"]) == (1, 0, True)
    assert [(e["id"], e["status"]) for e in doc["events"]] == [(str(stored.id), "received")]
    # Once the lock is gone the same command applies it, and says nothing about stopping.
    human = cli("billing", "webhooks", "replay", "evt_busy_1", "--process")
    assert human.exit_code == 0, human.output
    assert "stopped early" not in human.stdout
    shown = as_json(cli("billing", "webhooks", "show", "evt_busy_1", "--json"))
    assert shown["status"] == "processed"
