"""``Tenantry.check_schema``: a consumer's start-up check of the billing database, on each
backend (the refusals the client-portal example relies on are in tests/examples)."""

from __future__ import annotations

import pytest

from tenantry import Tenantry
from tenantry.db.engines import make_engine
from tenantry.db.schemas import billing_schema
from tenantry.errors import ConfigurationError, SchemaMismatch
from tenantry.runtime import Platform
from tenantry.services import schema_ops
from tenantry.settings import load_settings
from tests.conftest import DbFactory
from tests.platform_fixtures import backend_platform

__all__ = ["backend_platform"]


def test_at_the_expected_revision(backend_platform: Platform) -> None:
    state = Tenantry.check_schema("billing", expects="0005", as_app="portal")
    assert (state.role, state.revision, state.owner_app) == ("billing", "0005", "tenantry")
    assert "***" in state.url or backend_platform.settings.billing_url.password is None


def test_a_database_newer_than_the_consumer_asks_to_update_the_consumer(
    backend_platform: Platform,
) -> None:
    with pytest.raises(SchemaMismatch) as refused:
        Tenantry.check_schema("billing", expects="0003", as_app="portal")
    assert "is at revision 0005; 'portal' was written for 0003" in refused.value.message
    assert (
        refused.value.hint
        == "The database is newer: deploy the version of portal written for 0005."
    )


def test_an_empty_database_and_bad_arguments(
    backend_platform: Platform, new_database: DbFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = new_database("emptybilling")
    monkeypatch.setenv("DATABASE_URL_BILLING", empty.render_as_string(hide_password=False))
    with pytest.raises(SchemaMismatch, match="is empty; 'portal' expects revision 0005"):
        Tenantry.check_schema("billing", expects="0005", as_app="portal")
    engine = make_engine(empty)
    with engine.begin() as conn:  # the owner migrates it to 0002 only
        schema_ops.migrate(
            conn, billing_schema(), "e", target="0002", acting_app="tenantry", owner="tenantry"
        )
    engine.dispose()
    with pytest.raises(SchemaMismatch) as behind:
        Tenantry.check_schema("billing", expects="0005", as_app="portal", settings=load_settings())
    assert "at revision 0002" in behind.value.message
    assert "tenantry db migrate --role billing --as-app tenantry" in (behind.value.hint or "")
    with pytest.raises(ConfigurationError, match="which this tenantry does not know"):
        Tenantry.check_schema("billing", expects="0999", as_app="portal")
    with pytest.raises(ConfigurationError, match="not a database role"):
        Tenantry.check_schema("invoices", expects="0005", as_app="portal")
    with pytest.raises(ConfigurationError, match="checked per store"):
        Tenantry.check_schema("tenant", expects="0005", as_app="portal")
