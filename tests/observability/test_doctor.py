"""``tenantry doctor``'s checks on a real installation (master and billing on each backend),
and the worker's periodic run that logs what fails."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from tenantry.cli.main import app
from tenantry.db.billing.models import BillingCustomer, BillingWebhook, WebhookStatus
from tenantry.db.master.models import Backup, Operation, OperationKind
from tenantry.db.types import utcnow
from tenantry.jobs.heartbeat import Heartbeat
from tenantry.observability.checks import diagnose
from tenantry.observability.checks_storage import disk_status
from tenantry.observability.doctor import Check, DoctorContext, Status, overall
from tenantry.operations import work
from tenantry.operations.kit import OperationKit
from tenantry.runtime import Platform
from tenantry.services.billing import webhook_secrets
from tests.conftest import backend, new_database
from tests.platform_fixtures import backend_platform, platform, settings

__all__ = ["backend", "backend_platform", "new_database", "platform", "settings"]


def _problems(results: list[Check]) -> dict[str, Check]:
    return {r.name: r for r in results if r.status is not Status.OK}


def _backed_up_and_verified() -> None:
    result = CliRunner().invoke(
        app, ["backup", "run", "--db", "master", "--db", "billing", "--verify"]
    )
    assert result.exit_code == 0, result.output


def test_doctor_passes_a_healthy_install_then_names_each_problem_and_its_fix(
    backend_platform: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    p = backend_platform
    _backed_up_and_verified()
    with p.billing_sessions.begin() as session:
        secret = webhook_secrets.add_secret(
            session, p.box, "shop", "stripe", "whsec_doctor_test_1", actor="test"
        )
        session.add(BillingCustomer(app_id="shop", external_customer_id="c1", processor="stripe"))
    heartbeat = Heartbeat(p.writer_sessions)
    heartbeat.start()
    try:
        caplog.set_level(logging.INFO, logger="tenantry.doctor")
        healthy = work.doctor_tick(p)
        assert _problems(healthy) == {}
        assert overall(healthy) is Status.OK
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    finally:
        heartbeat.stop()

    # The worker stopped, the app's only secret retired, master's backup 40 h old (36 allowed).
    with p.billing_sessions.begin() as session:
        webhook_secrets.retire_secret(session, str(secret.id), actor="test")
    with p.sessions.begin() as session:
        session.execute(
            update(Backup)
            .where(Backup.role == "master")
            .values(started_at=utcnow() - timedelta(hours=40))
        )
        master_backup = session.query(Backup).filter(Backup.role == "master").one()
    caplog.clear()
    results = work.doctor_tick(p)
    problems = _problems(results)
    assert overall(results) is Status.CRITICAL
    assert set(problems) == {"worker", "webhook secret shop/stripe", "backup master"}
    assert problems["worker"].fix is not None
    assert "tenantry worker" in problems["worker"].fix
    assert "scheduled backups" in problems["worker"].evidence
    assert problems["webhook secret shop/stripe"].fix == (
        "tenantry billing secrets add shop --processor stripe "
        "(the endpoint's signing secret from the processor's dashboard)"
    )
    overdue = problems["backup master"]
    assert overdue.status is Status.CRITICAL
    assert "overdue" in overdue.evidence
    assert "36 h" in overdue.evidence
    assert overdue.fix == "tenantry backup run --db master --verify"
    assert overdue.operation_id == str(master_backup.id)
    assert all(problems[n].status is Status.CRITICAL for n in problems)
    # The tick logged each one at ERROR on tenantry.doctor, the backup with its id.
    logged = [r for r in caplog.records if r.name == "tenantry.doctor"]
    assert {r.levelno for r in logged} == {logging.ERROR}
    assert len(logged) == 3
    assert any(str(master_backup.id) in r.getMessage() for r in logged)
    assert not any("whsec_doctor_test_1" in r.getMessage() for r in logged)


def _context(platform: Platform) -> DoctorContext:
    return DoctorContext.borrow(
        platform.settings, platform.master_engine, platform.billing_engine, platform.box
    )


def test_work_queued_too_long_warns_then_is_critical_with_its_operation_id(
    platform: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    kit = OperationKit.from_settings(platform.sessions, platform.settings)
    op_id = kit.create(OperationKind.BACKUP, target="master")
    ctx = _context(platform)

    def waiting() -> Check:
        return next(r for r in diagnose(ctx) if r.name == "waiting work")

    assert waiting().status is Status.OK  # just queued: a worker has minutes to take it
    with platform.sessions.begin() as session:
        session.execute(
            update(Operation)
            .where(Operation.id == op_id)
            .values(created_at=utcnow() - timedelta(minutes=6))
        )
    late = waiting()
    assert late.status is Status.WARNING
    assert late.operation_id == str(op_id)
    assert f"tenantry ops show {op_id}" in (late.fix or "")
    with platform.sessions.begin() as session:
        session.execute(
            update(Operation)
            .where(Operation.id == op_id)
            .values(created_at=utcnow() - timedelta(minutes=31))
        )
    assert waiting().status is Status.CRITICAL
    caplog.set_level(logging.WARNING, logger="tenantry.doctor")
    work.doctor_tick(platform)
    records = [r for r in caplog.records if "waiting work" in r.getMessage()]
    assert records
    assert records[0].levelno == logging.ERROR
    assert f"(operation {op_id})" in records[0].getMessage()


@pytest.mark.parametrize(
    ("failed", "total", "expected"),
    [
        (1, 20, Status.OK),  # 5 %: not above the warning line
        (2, 35, Status.WARNING),  # 5.7 %
        (2, 20, Status.WARNING),  # 10 %: not above the critical line
        (3, 20, Status.CRITICAL),  # 15 %
    ],
)
def test_webhook_failures_against_seed_004s_five_and_ten_percent(
    platform: Platform, failed: int, total: int, expected: Status
) -> None:
    now = utcnow()
    with platform.billing_sessions.begin() as session:
        for i in range(total):
            session.add(
                BillingWebhook(
                    app_id="shop",
                    processor="stripe",
                    event_id=f"evt_{i}",
                    event_type="invoice.paid",
                    payload="{}",
                    status=WebhookStatus.FAILED if i < failed else WebhookStatus.PROCESSED,
                    received_at=now - timedelta(hours=1),
                )
            )
        # Outside the 24 h window: never counted.
        session.add(
            BillingWebhook(
                app_id="shop",
                processor="stripe",
                event_id="evt_old",
                event_type="invoice.paid",
                payload="{}",
                status=WebhookStatus.FAILED,
                received_at=now - timedelta(hours=30),
            )
        )
    result = next(r for r in diagnose(_context(platform)) if r.name == "webhook failures")
    assert result.status is expected
    assert f"{failed} of {total} webhook event(s) failed" in result.evidence
    if expected is not Status.OK:
        assert "tenantry billing webhooks replay --failed" in (result.fix or "")


def test_webhook_backlog_names_the_oldest_waiting_event(platform: Platform) -> None:
    with platform.billing_sessions.begin() as session:
        session.add(
            BillingWebhook(
                app_id="shop",
                processor="stripe",
                event_id="evt_waiting",
                event_type="invoice.paid",
                payload="{}",
                status=WebhookStatus.RECEIVED,
                received_at=utcnow() - timedelta(minutes=45),
            )
        )
    results = {r.name: r for r in diagnose(_context(platform))}
    assert results["webhook backlog"].status is Status.CRITICAL
    assert "45 min" in results["webhook backlog"].evidence
    # Waiting events need a worker too.
    assert "1 webhook event(s) to apply" in results["worker"].evidence


@pytest.mark.parametrize(
    ("share", "expected"),
    [(0.80, Status.OK), (0.801, Status.WARNING), (0.90, Status.WARNING), (0.901, Status.CRITICAL)],
)
def test_disk_thresholds_of_seed_004(share: float, expected: Status) -> None:
    assert disk_status(share) is expected


def test_a_backup_never_restore_tested_warns_and_a_failed_restore_test_is_critical(
    platform: Platform,
) -> None:
    result = CliRunner().invoke(app, ["backup", "run", "--db", "master", "--db", "billing"])
    assert result.exit_code == 0, result.output
    with platform.sessions() as session:
        master = session.query(Backup).filter(Backup.role == "master").one()
    checks = {r.name: r for r in diagnose(_context(platform))}
    untested = checks["backup master"]
    assert untested.status is Status.WARNING
    assert "never restore-tested" in untested.evidence
    assert untested.fix == f"tenantry backup verify {master.id}"
    assert untested.operation_id == str(master.id)

    result = CliRunner().invoke(app, ["backup", "run", "--db", "master", "--verify"])
    assert result.exit_code == 0, result.output
    assert next(r for r in diagnose(_context(platform)) if r.name == "backup master").status is (
        Status.OK
    )
    with platform.sessions.begin() as session:
        tested = (
            session.query(Backup)
            .filter(Backup.role == "master", Backup.verified_at.is_not(None))
            .one()
        )
        # A later restore test of it failed (as `backup verify` records one).
        tested.verify_passed = False
        tested.verified_at = utcnow()
        tested.verify_error = "row counts differ: products 3 != 4"
    failed = next(r for r in diagnose(_context(platform)) if r.name == "backup master")
    assert failed.status is Status.CRITICAL
    assert "row counts differ" in failed.evidence
    assert failed.operation_id == str(tested.id)
    assert f"tenantry backup show {tested.id}" in (failed.fix or "")
