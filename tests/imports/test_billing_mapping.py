"""Mapping files of ``import billing``: each mistake refused with the file and the key named;
a mapping that names what the source lacks reported by the dry-run; conversions of amounts
in major units by each currency's own decimals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tenantry.errors import InvalidInput
from tenantry.imports.billing.convert import Converter, RowProblem
from tenantry.imports.billing.mapping import load_mapping, parse_mapping
from tenantry.runtime import Platform
from tests.fixtures import legacy_billing
from tests.imports.conftest import Invoke, billing_counts, url_text


def _fixture_mapping() -> dict[str, Any]:
    document = yaml.safe_load(legacy_billing.MAPPING.read_text())
    assert isinstance(document, dict)
    return document


def _refused(document: object) -> str:
    with pytest.raises(InvalidInput) as refused:
        parse_mapping(document, name="mapping file 'm.yml'")
    assert refused.value.hint is not None
    return refused.value.message


def test_the_fixture_mapping_is_read() -> None:
    mapping = load_mapping(legacy_billing.MAPPING)
    assert [name for name, _ in mapping.in_order()] == list(legacy_billing.metadata.tables)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (
            lambda d: d["tables"]["legacy_customers"].update(intoo="customers"),
            "unknown key 'tables.legacy_customers.intoo'",
        ),
        (
            lambda d: d["tables"]["legacy_invoices"]["transforms"]["status"].update(map={}),
            "unknown key 'tables.legacy_invoices.transforms.status.map'",
        ),
        (lambda d: d.update(version=2), "unknown key 'version'"),
        (
            lambda d: d["tables"]["legacy_customers"].pop("external_id"),
            "missing key 'tables.legacy_customers.external_id'",
        ),
        (
            lambda d: d["tables"]["legacy_customers"].update(into="clients"),
            "tables.legacy_customers.into",
        ),
        (
            lambda d: d["tables"]["legacy_customers"]["columns"].update(nickname="name"),
            "tables.legacy_customers.columns.nickname: billing customers has no column 'nickname'",
        ),
        (
            lambda d: d["tables"]["legacy_invoices"]["links"].pop("customer"),
            "needs link 'customer'",
        ),
        (
            lambda d: d["tables"]["legacy_payments"]["links"].update(plan="plan_id"),
            "has no link 'plan'",
        ),
        (
            lambda d: d["tables"]["legacy_customers"]["transforms"].update(
                processor={"constant": "stripe", "default": "x"}
            ),
            "constant cannot be combined with default",
        ),
        (
            lambda d: d["tables"]["legacy_webhooks"].update(into="customers"),
            "feeds customers already",
        ),
    ],
)
def test_a_bad_mapping_is_refused_naming_the_key(change: Any, named: str) -> None:
    document = _fixture_mapping()
    change(document)
    message = _refused(document)
    assert "m.yml" in message
    assert named in message


def test_invalid_yaml_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yml"
    path.write_text("tables:\n  legacy_customers: {into: customers\n")
    with pytest.raises(InvalidInput) as refused:
        load_mapping(path)
    assert "bad.yml" in refused.value.message
    assert "line" in refused.value.message


@pytest.mark.parametrize(
    ("currency", "amount", "minor"),
    [("USD", "12.34", 1234), ("JPY", "1500", 1500), ("KWD", "1.234", 1234), ("EUR", "7", 700)],
)
def test_major_units_become_minor_units_by_the_currency(
    currency: str, amount: str, minor: int
) -> None:
    mapping = load_mapping(legacy_billing.MAPPING).tables["legacy_subscriptions"]
    columns = {c.name for c in legacy_billing.subscriptions.c}
    converter = Converter("legacy_subscriptions", mapping, columns, "acme")
    row = {
        "id": 1,
        "customer_id": 1,
        "plan_name": "pro",
        "status": "active",
        "price": amount,
        "currency": currency.lower(),
        "billing_cycle": "monthly",
    }
    converted = converter.convert(row, "1")
    assert converted.values["amount_minor"] == minor
    assert converted.values["currency"] == currency


def test_an_amount_finer_than_its_currency_is_a_problem() -> None:
    mapping = load_mapping(legacy_billing.MAPPING).tables["legacy_subscriptions"]
    columns = {c.name for c in legacy_billing.subscriptions.c}
    converter = Converter("legacy_subscriptions", mapping, columns, "acme")
    row = {
        "id": 1,
        "customer_id": 1,
        "plan_name": "pro",
        "status": "active",
        "price": "10.5",
        "currency": "JPY",
        "billing_cycle": "monthly",
    }
    with pytest.raises(RowProblem) as problem:
        converter.convert(row, "1")
    assert problem.value.column == "price"
    assert "decimals" in problem.value.problem


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_what_the_source_lacks_is_reported_by_the_dry_run(
    backend_platform: Platform, legacy_url: Any, run_import: Invoke, tmp_path: Path
) -> None:
    legacy_billing.build(legacy_url, customers_count=10)
    document = _fixture_mapping()
    document["tables"]["legacy_invoices"]["columns"]["amount_minor"] = "total"
    document["tables"]["legacy_refunds"] = {"into": "webhooks", "external_id": "id"}
    del document["tables"]["legacy_webhooks"]
    path = tmp_path / "mapping.yml"
    path.write_text(yaml.safe_dump(document))

    dry = run_import(
        "--url", url_text(legacy_url), "--map", str(path), "--app", "acme", "--dry-run", "--json"
    )

    assert dry.exit_code == 1
    problems = {(p["table"], p["column"]): p["problem"] for p in json.loads(dry.stdout)["problems"]}
    assert "does not have" in problems[("legacy_invoices", "total")]
    assert "no such table" in problems[("legacy_refunds", None)]
    assert set(billing_counts(backend_platform, "acme").values()) == {0}


def test_a_card_number_in_free_text_is_a_problem() -> None:
    mapping = parse_mapping(
        {
            "tables": {
                "legacy_invoices": {
                    "into": "invoices",
                    "external_id": "id",
                    "links": {"customer": "customer_id"},
                    "columns": {"amount_minor": "amount", "description": "note"},
                }
            }
        }
    )
    converter = Converter(
        "legacy_invoices",
        mapping.tables["legacy_invoices"],
        {"id", "customer_id", "amount", "currency", "note"},
        "acme",
    )
    row = {"id": 5, "customer_id": 1, "amount": 100, "currency": "USD"}
    assert converter.convert({**row, "note": "March, paid"}, "5").values["description"]
    with pytest.raises(RowProblem) as problem:
        converter.convert({**row, "note": "paid with 4242 4242 4242 4242"}, "5")
    assert problem.value.column == "note"
    assert "card number" in problem.value.problem
    assert "4242" not in problem.value.problem


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_bad_arguments_are_refused_with_what_to_do(
    backend_platform: Platform, run_import: Invoke, tmp_path: Path
) -> None:
    mapping = str(legacy_billing.MAPPING)
    legacy = f"sqlite:///{tmp_path / 'legacy.db'}"

    missing_file = run_import("--url", legacy, "--map", mapping, "--app", "acme", "--dry-run")
    assert missing_file.exit_code == 1
    assert "does not exist" in missing_file.stderr
    assert not (tmp_path / "legacy.db").exists()  # not created by looking

    no_map = run_import("--url", legacy, "--map", str(tmp_path / "nope.yml"), "--app", "acme")
    assert no_map.exit_code == 2
    assert "nope.yml" in no_map.stderr

    bad_url = run_import("--url", "oracle://x", "--map", mapping, "--app", "acme")
    assert bad_url.exit_code == 2
    assert "--url" in bad_url.stderr

    (tmp_path / "legacy.db").touch()
    bad_app = run_import("--url", legacy, "--map", mapping, "--app", "Not An App", "--dry-run")
    assert bad_app.exit_code == 2
    assert "app id" in bad_app.stderr

    # An unreachable server: named without its password.
    unreachable = run_import(
        "--url",
        "postgresql://legacy:S3cretPassw0rd@127.0.0.1:1/app",
        "--map",
        mapping,
        "--app",
        "acme",
        "--json",
    )
    assert unreachable.exit_code == 1
    assert "S3cretPassw0rd" not in unreachable.output
    assert json.loads(unreachable.stdout)["error"]["type"] == "DatabaseUnreachable"
