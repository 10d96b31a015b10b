"""The backup scheduler on PostgreSQL through a login that is not a superuser: one database's
failure is reported and the others are still backed up and verified."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tenantry.backup.storage import storage_for
from tenantry.db.master.models import Backup, BackupStatus
from tenantry.operations import backup_schedule
from tenantry.runtime import Platform
from tenantry.settings import load_settings
from tests.pg_roles import PgLogin, unprivileged_login
from tests.platform_fixtures import ENV_VARS, install


@pytest.fixture
def unprivileged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Platform, PgLogin]]:
    """An installation whose master and billing are reached as a non-superuser."""
    with unprivileged_login() as login:
        for var in ENV_VARS:
            monkeypatch.delenv(var, raising=False)
        suffix = login.name[-10:]
        monkeypatch.setenv("TENANTRY_DATA_DIR", str(tmp_path / "data"))
        monkeypatch.setenv("DATABASE_URL", login.url(f"tt_master_{suffix}").render_as_string(False))
        monkeypatch.setenv(
            "DATABASE_URL_BILLING", login.url(f"tt_billing_{suffix}").render_as_string(False)
        )
        settings = load_settings()
        install(settings, from_templates=False)
        platform = Platform.open(settings)
        try:
            yield platform, login
        finally:
            platform.close()


def test_a_tick_reports_one_failure_and_still_backs_up_and_verifies_the_rest(
    unprivileged: tuple[Platform, PgLogin],
) -> None:
    p, login = unprivileged
    login.as_admin(
        "CREATE TABLE zz_not_yours (id int); REVOKE ALL ON zz_not_yours FROM PUBLIC",
        str(p.settings.master_url.database),
    )
    events: list[str] = []
    report = backup_schedule.tick(
        p.sessions, storage_for(p.settings), p.settings, p.box, on_event=events.append
    )
    assert len(report.failures) == 1
    assert report.failures[0].startswith("backup of master: ")
    assert "permission denied" in report.failures[0]
    assert len(report.backed_up) == 1
    assert report.verified == report.backed_up
    with p.sessions() as session:
        billing = session.get_one(Backup, report.backed_up[0])
        assert billing.role == "billing"
        assert billing.status == BackupStatus.VERIFIED
        assert billing.verify_notes is not None
        assert billing.verify_notes.startswith("amcheck skipped: permission denied")
    assert any("amcheck skipped" in e for e in events)
    assert not any(login.password in e for e in events + report.failures)
