"""`tenantry stores erase-customer` and `stores delete --erase-billing-customer`."""

from __future__ import annotations

from sqlalchemy import select

from tenantry.db.billing.models import BillingCustomer
from tenantry.db.tenant.store.models import Customer
from tenantry.runtime import Platform
from tenantry.services import stores
from tenantry.settings import load_settings
from tests.cli.conftest import Invoke, as_json


def test_erase_customer_and_delete_with_the_billing_customer(cli: Invoke) -> None:
    assert cli("init").exit_code == 0
    assert cli("stores", "create", "gdpr-shop", "--name", "GDPR Shop").exit_code == 0
    assert cli("provision", "gdpr-shop", "--new", "--inline", "--wait").exit_code == 0
    platform = Platform.open(load_settings())
    try:
        with platform.sessions() as master:
            store = stores.get_store(master, "gdpr-shop")
            billing_customer = store.billing_customer_id
            with platform.router.session(master, store) as tenant, tenant.begin():
                tenant.add(Customer(email="erase.me@example.org", first_name="Erin"))
    finally:
        platform.close()
    assert billing_customer is not None

    neither = cli("stores", "erase-customer", "gdpr-shop", "--yes")
    assert neither.exit_code == 2
    assert "--email E or --id ID" in neither.stderr
    unknown = cli("stores", "erase-customer", "gdpr-shop", "--email", "no@example.org", "--yes")
    assert unknown.exit_code == 1
    assert "nothing was changed" in unknown.stderr
    done = cli(
        "stores",
        "erase-customer",
        "gdpr-shop",
        "--email",
        "erase.me@example.org",
        "--yes",
        "--json",
    )
    assert done.exit_code == 0, done.output
    assert as_json(done)["customer_deleted"] is True

    deleted = cli("stores", "delete", "gdpr-shop", "--yes", "--erase-billing-customer", "--json")
    assert deleted.exit_code == 0, deleted.output
    assert as_json(deleted)["billing_customer_erased"] is True
    platform = Platform.open(load_settings())
    try:
        with platform.billing_sessions() as billing:
            erased = billing.scalar(
                select(BillingCustomer).where(BillingCustomer.id == billing_customer)
            )
            assert erased is not None
            assert erased.erased_at is not None
            assert erased.name is None
    finally:
        platform.close()
    log = as_json(cli("audit", "list", "--json"))
    assert [e["outcome"] for e in log if e["action"] == "store.erase_customer"] == [
        "succeeded",
        "refused",
    ]
    assert "erase.me@example.org" not in str(log)
    assert any(e["action"] == "customer.erase" and e["log"] == "billing" for e in log)
