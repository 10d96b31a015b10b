"""Each database's protection named as the console's Backups page shows it (green, amber,
red, with why), decided from its newest good backup and restore test against its policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tenantry.db.master.models import Backup, BackupStatus
from tenantry.services.backups.policies import DEFAULTS
from tenantry.services.backups.scheduling import Protection

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
POLICY = DEFAULTS["master"]  # at most 36 h old


def _backup(hours_ago: float, passed: bool | None = None) -> Backup:
    return Backup(
        status=BackupStatus.STORED,
        started_at=NOW - timedelta(hours=hours_ago),
        verified_at=None if passed is None else NOW - timedelta(hours=hours_ago - 0.5),
        verify_passed=passed,
    )


@pytest.mark.parametrize(
    ("good", "verified", "unverifiable", "state", "why"),
    [
        (None, None, None, "red", "no good backup"),
        (40, True, None, "red", "newest good backup 40 h old; the policy allows 36 h"),
        (2, True, "no scratch server", "red", "cannot be restore-tested: no scratch server"),
        (2, False, None, "red", "the newest restore test failed"),
        (30, True, None, "amber", "newest good backup 30 h old of 36 h allowed"),
        (2, None, None, "amber", "no restore test has run yet"),
        (2, True, None, "green", "newest good backup 2.0 h old of 36 h allowed"),
    ],
)
def test_state_against_the_policy(
    good: float | None,
    verified: bool | None,
    unverifiable: str | None,
    state: str,
    why: str,
) -> None:
    last_good = None if good is None else _backup(good)
    last_verified = None
    if verified is not None and good is not None:
        last_verified = _backup(good, passed=verified is not False)
    found = Protection("master", POLICY, last_good, last_good, last_verified, NOW, unverifiable)
    assert found.state == (state, why)
