"""The doctor's database checks: a billing URL leading to master, pending migrations, TLS
required but not used."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tenantry.db import migrations
from tenantry.db.engines import make_engine
from tenantry.db.master.models import DatabaseStatus
from tenantry.db.schemas import billing_schema
from tenantry.db.urls import parse_url
from tenantry.observability.checks import diagnose
from tenantry.observability.doctor import Check, DoctorContext, Status
from tenantry.runtime import Platform
from tenantry.services import schema_ops, servers
from tenantry.services.stores import create_store
from tenantry.settings import Settings, load_settings
from tests.conftest import SERVER_URLS, require_server
from tests.helpers import free_port
from tests.platform_fixtures import settings

__all__ = ["settings"]


def _results(**overrides: object) -> dict[str, Check]:
    context = DoctorContext.open(load_settings(**overrides))
    try:
        return {r.name: r for r in diagnose(context)}
    finally:
        context.close()


def test_a_billing_url_that_leads_to_master_is_refused_by_the_identity_guard(
    settings: Settings,
) -> None:
    master = f"sqlite:///{settings.data_dir / 'master.db'}"
    results = _results(DATABASE_URL_BILLING=master)
    check = results["billing identity"]
    assert check.status is Status.CRITICAL
    assert "expected a billing database" in check.evidence
    assert "found a master database" in check.evidence
    assert results["master identity"].status is Status.OK


def test_pending_billing_migrations_are_critical_with_the_migrate_command(
    settings: Settings, tmp_path: Path
) -> None:
    behind = parse_url(f"sqlite:///{tmp_path / 'old-billing.db'}")
    engine = make_engine(behind)
    with engine.begin() as conn:
        schema_ops.migrate(
            conn, billing_schema(), "old", target="0002", acting_app="tenantry", owner="tenantry"
        )
    engine.dispose()
    results = _results(DATABASE_URL_BILLING=str(behind))
    check = results["billing migrations"]
    assert check.status is Status.CRITICAL
    assert "at 0002" in check.evidence
    spec = billing_schema()
    pending = migrations.between(spec, "0002", migrations.head(spec))
    assert pending, "the billing schema has revisions after 0002"
    assert f"head is {migrations.head(spec)}: {len(pending)} migration(s) pending" in (
        check.evidence
    )
    assert check.fix == "tenantry db migrate --role billing"
    assert results["master migrations"].status is Status.OK


def test_tls_required_but_a_configured_url_without_it_is_critical(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = SERVER_URLS["postgresql"].replace("postgres@", "postgres:s3cr3tpw@")
    monkeypatch.setenv("TENANTRY_REQUIRE_TLS", "true")
    results = _results(DATABASE_URL_BILLING=url)
    check = results["TLS"]
    assert check.status is Status.CRITICAL
    assert "DATABASE_URL_BILLING" in check.evidence
    assert "s3cr3tpw" not in check.evidence
    assert "sslmode" in (check.fix or "")
    # tenantry refused to connect without TLS: nothing was sent.
    assert results["billing connects"].status is Status.CRITICAL
    monkeypatch.setenv("TENANTRY_REQUIRE_TLS", "false")
    assert _results()["TLS"].status is Status.OK


def test_a_tenant_not_at_head_is_lagging_with_the_fleet_command(settings: Settings) -> None:
    platform = Platform.open(settings)
    try:
        with platform.sessions.begin() as session:
            store = create_store(session, slug="lagger", name="Lagger", actor="test")
            store.database_status = DatabaseStatus.ACTIVE
            store.schema_revision = None
    finally:
        platform.close()
    check = _results()["tenant migrations"]
    assert check.status is Status.WARNING
    assert "1 of 1 tenant(s) not at head" in check.evidence
    assert "lagger" in check.evidence
    assert check.fix == "tenantry fleet migrate"


def test_a_registered_server_that_stopped_answering_is_critical_and_asked_once(
    settings: Settings,
) -> None:
    require_server("postgresql")
    platform = Platform.open(settings)
    try:
        with platform.sessions.begin() as session:
            server, _ = servers.add_server(
                session,
                platform.box,
                name="gone-pg",
                admin_url=SERVER_URLS["postgresql"],
                actor="test",
            )
            # The server moved away: nothing listens where master says it is.
            server.admin_url_encrypted = platform.box.seal(
                f"postgresql://postgres:pw1234567@127.0.0.1:{free_port()}/postgres"
            )
    finally:
        platform.close()
    started = time.monotonic()
    results = _results()
    assert time.monotonic() - started < 10
    check = results["server gone-pg"]
    assert check.status is Status.CRITICAL
    assert "pw1234567" not in check.evidence
    assert check.fix == "tenantry servers check gone-pg"
    assert results["stale templates"].status is Status.OK  # not asked again
