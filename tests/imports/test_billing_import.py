"""``import billing`` on SQLite, PostgreSQL and MariaDB: a realistic legacy billing database
imported under an app, checked against what the generator wrote (not what tenantry computed);
rerun without duplicates; a tampered target found by verification; dirty data and a bad
mapping refused before any write; the legacy rows' secrets never printed."""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.engine import URL

from tenantry.db.billing.models import (
    BillingCustomer,
    BillingInvoice,
    BillingPayment,
    BillingSubscription,
    BillingWebhook,
)
from tenantry.db.copy import table_digest
from tenantry.db.engines import make_engine
from tenantry.db.master.models import Operation
from tenantry.imports.billing.mapping import load_mapping
from tenantry.operations.import_billing import result_of, verify_again
from tenantry.runtime import Platform
from tests.fixtures import legacy_billing
from tests.imports.conftest import Invoke, billing_counts, billing_totals, url_text

APP = "legacy-app"
#: Legacy table → the billing table it feeds (as the fixture's mapping says).
FEEDS = {
    "legacy_customers": "customers",
    "legacy_subscriptions": "subscriptions",
    "legacy_invoices": "invoices",
    "legacy_payments": "payments",
    "legacy_webhooks": "webhooks",
}


def _import(run_import: Invoke, url: URL, *extra: str, app_id: str = APP) -> Any:
    return run_import(
        "--url", url_text(url), "--map", str(legacy_billing.MAPPING), "--app", app_id, *extra
    )


def _source_digests(url: URL) -> dict[str, str]:
    """Each legacy table's row count and content checksum, read with tenantry's copy code."""
    engine = make_engine(url, pooled=False)
    try:
        with engine.connect() as conn:
            return {
                t.name: table_digest(conn, t).sha256 for t in legacy_billing.metadata.sorted_tables
            }
    finally:
        engine.dispose()


def _expected_counts(legacy: legacy_billing.Legacy) -> dict[str, int]:
    return {FEEDS[table]: rows for table, rows in legacy.rows.items()}


def _expected_totals(legacy: legacy_billing.Legacy) -> dict[str, dict[str, int]]:
    return {FEEDS[table]: totals for table, totals in legacy.totals.items()}


def test_import_matches_the_legacy_data_and_reruns_without_duplicates(
    backend_platform: Platform, legacy_url: URL, run_import: Invoke
) -> None:
    legacy = legacy_billing.build(legacy_url)
    before = _source_digests(legacy_url)

    result = _import(run_import, legacy_url, "--json")

    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["ok"] is True
    assert billing_counts(backend_platform, APP) == _expected_counts(legacy)
    assert billing_totals(backend_platform, APP) == _expected_totals(legacy)
    assert _source_digests(legacy_url) == before  # the source is only read
    # The verification the operation stored says the same, per table and currency.
    operation_id = uuid.UUID(doc["operation_id"])
    stored = result_of(backend_platform, operation_id)
    assert stored is not None
    assert stored["verification"]["ok"] is True
    by_table = {t["table"]: t for t in stored["verification"]["tables"]}
    for table, totals in legacy.totals.items():
        assert by_table[table]["billing"]["totals"] == totals
    with backend_platform.sessions() as session:
        operation = session.get(Operation, operation_id)
        assert operation is not None
        assert (operation.kind, operation.status) == ("import_billing", "succeeded")
        assert operation.progress_current == sum(legacy.rows.values())

    # Links resolved to the imported rows, values transformed as mapped.
    with backend_platform.billing_sessions() as session:
        invoice = session.scalars(
            select(BillingInvoice).where(
                BillingInvoice.app_id == APP, BillingInvoice.invoice_number == "INV-000001"
            )
        ).one()
        customer = session.get(BillingCustomer, invoice.customer_id)
        assert customer is not None
        assert customer.external_customer_id == "1"
        assert customer.processor_customer_id == "cus_00000001"
        statuses = set(session.scalars(select(BillingSubscription.status)))
        assert statuses <= {"active", "trialing", "canceled", "past_due"}
        assert "trialing" in statuses
        assert {w.processor for w in session.scalars(select(BillingWebhook))} == {"stripe"}

    again = _import(run_import, legacy_url, "--json")

    assert again.exit_code == 0, again.output
    rerun = json.loads(again.stdout)
    assert sum(t["written"] for t in rerun["tables"]) == 0
    assert sum(t["already_imported"] for t in rerun["tables"]) == sum(legacy.rows.values())
    assert billing_counts(backend_platform, APP) == _expected_counts(legacy)
    assert billing_totals(backend_platform, APP) == _expected_totals(legacy)


def test_verification_finds_a_tampered_target(
    backend_platform: Platform, legacy_url: URL, run_import: Invoke
) -> None:
    legacy_billing.build(legacy_url, customers_count=60)
    assert _import(run_import, legacy_url).exit_code == 0
    with backend_platform.billing_writer_sessions.begin() as session:
        invoice = session.scalars(
            select(BillingInvoice).where(BillingInvoice.app_id == APP).limit(1)
        ).one()
        session.execute(
            update(BillingInvoice)
            .where(BillingInvoice.id == invoice.id)
            .values(amount_minor=BillingInvoice.amount_minor + 1)
        )
        payment_id = session.scalars(
            select(BillingPayment.id).where(BillingPayment.app_id == APP).limit(1)
        ).one()
        session.execute(delete(BillingPayment).where(BillingPayment.id == payment_id))
        currency = invoice.currency

    found = verify_again(backend_platform, legacy_url, load_mapping(legacy_billing.MAPPING), APP)

    assert not found.ok
    differences = found.differences()
    assert any("legacy_invoices" in d and f"{currency} total" in d for d in differences), (
        differences
    )
    assert any("legacy_payments" in d and "rows in the source" in d for d in differences)

    # Importing again puts the deleted payment back, and the changed amount still shows.
    rerun = _import(run_import, legacy_url)
    assert rerun.exit_code == 1
    assert "legacy_invoices" in rerun.stderr
    assert f"{currency} total" in rerun.stderr
    with backend_platform.billing_sessions() as session:
        assert session.get(BillingPayment, payment_id) is not None


def test_dirty_data_is_reported_by_the_dry_run_and_refused_before_any_write(
    backend_platform: Platform, legacy_url: URL, run_import: Invoke
) -> None:
    legacy = legacy_billing.build(legacy_url, customers_count=40)
    added = legacy_billing.dirty(legacy_url)

    dry = _import(run_import, legacy_url, "--dry-run", "--json")

    assert dry.exit_code == 1
    doc = json.loads(dry.stdout)
    assert doc["ok"] is False
    found = {(p["table"], p["column"]): p for p in doc["problems"]}
    for (table, column), key in added.items():
        assert (table, column) in found, (table, column, sorted(found))
        assert key in found[(table, column)]["examples"]
    assert "bad currency" in found[("legacy_invoices", "currency")]["problem"]
    assert "negative" in found[("legacy_invoices", "amount")]["problem"]
    assert "customer" in found[("legacy_invoices", "customer_id")]["problem"]
    assert "duplicate" in found[("legacy_webhooks", "event_id")]["problem"]
    # The dry run counted what an import would write, and wrote nothing.
    tables = {t["table"]: t for t in doc["tables"]}
    assert tables["legacy_customers"]["new"] == legacy.rows["legacy_customers"]
    assert set(billing_counts(backend_platform, APP).values()) == {0}

    people = _import(run_import, legacy_url, "--dry-run")
    assert people.exit_code == 1
    assert "900001" in people.stderr
    assert "legacy_invoices" in people.stderr

    refused = _import(run_import, legacy_url)

    assert refused.exit_code == 2
    assert "nothing was written" in refused.stderr
    assert "--dry-run" in refused.stderr
    assert set(billing_counts(backend_platform, APP).values()) == {0}
    # Not a row of the legacy customers' secrets in anything printed.
    for output in (dry.output, people.output, refused.output):
        assert legacy_billing.SECRET_PREFIX not in output


def test_a_key_billing_holds_already_is_reported_and_nothing_written(
    backend_platform: Platform, legacy_url: URL, run_import: Invoke
) -> None:
    legacy_billing.build(legacy_url, customers_count=20)
    # The app created customer 3 in billing itself, before any import.
    with backend_platform.billing_writer_sessions.begin() as session:
        session.add(BillingCustomer(app_id=APP, external_customer_id="3", name="Live"))

    dry = _import(run_import, legacy_url, "--dry-run", "--json")

    assert dry.exit_code == 1
    problems = json.loads(dry.stdout)["problems"]
    clash = [p for p in problems if "already holds" in p["problem"]]
    assert len(clash) == 1
    assert (clash[0]["table"], clash[0]["column"]) == ("legacy_customers", "id")
    assert clash[0]["examples"] == ["3"]
    refused = _import(run_import, legacy_url)
    assert refused.exit_code == 2
    assert billing_counts(backend_platform, APP)["customers"] == 1
    # Another app's customers never clash on the app's own ids; the processor's ids are
    # unique across apps, so once this app's import ran, another app cannot take them again.
    with backend_platform.billing_writer_sessions.begin() as session:
        session.execute(delete(BillingCustomer).where(BillingCustomer.app_id == APP))
    assert _import(run_import, legacy_url).exit_code == 0
    other = _import(run_import, legacy_url, "--dry-run", "--json", app_id="other-app")
    assert other.exit_code == 1
    columns = {(p["table"], p["column"]) for p in json.loads(other.stdout)["problems"]}
    assert ("legacy_customers", "stripe_customer_id") in columns
    assert ("legacy_payments", "payment_provider_id") in columns
