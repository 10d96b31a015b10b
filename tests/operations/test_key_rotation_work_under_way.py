"""`keys rotate --retire-old` and work that was running when the key changed.

Such work may hold a secret it sealed under the old key (a new login's password) and save it
only after the rotation checked every stored secret: retiring the old key then would leave
it for no key to open. The old keys are kept, with the documented refusal, until that work
has finished; work started after the new key is in the file seals under it.
"""

from __future__ import annotations

import pytest

from tenantry.crypto import raw_keys
from tenantry.db.master.models import OperationKind
from tenantry.errors import ConfigurationError
from tenantry.operations.key_rotation import rotate
from tenantry.operations.running import run_here
from tenantry.runtime import Platform
from tests.platform_fixtures import platform, settings

__all__ = ["platform", "settings"]


def test_old_keys_are_kept_while_work_started_before_the_rotation_runs(
    platform: Platform,
) -> None:
    (before,), _ = raw_keys(platform.settings)
    with run_here(
        platform.sessions,
        platform.settings,
        OperationKind.STORE_CREDENTIALS,
        target="busy-shop",
        requested_by="cli:test",
    ):
        with pytest.raises(ConfigurationError) as refused:
            rotate(platform, retire_old=True, actor="cli:test")
        assert "store_credentials operation(s) under way (1)" in refused.value.message
        assert "sealed meanwhile" in refused.value.message
        assert "once running jobs have finished" in (refused.value.hint or "")
        kept, _ = raw_keys(platform.settings)
        assert len(kept) == 2  # a new primary, and the old key after it
        assert kept[1] == before

    done = rotate(platform, retire_old=True, actor="cli:test")

    assert done.retired_old
    (only,), _ = raw_keys(platform.settings)
    assert only not in (before, kept[0])


def test_work_that_saves_no_secret_does_not_hold_the_rotation_back(
    platform: Platform,
) -> None:
    """A fleet run opens stored secrets but saves none: it never holds the old keys."""
    with run_here(
        platform.sessions, platform.settings, OperationKind.FLEET_RUN, requested_by="cli:test"
    ):
        done = rotate(platform, retire_old=True, actor="cli:test")
    assert done.retired_old
    assert len(raw_keys(platform.settings)[0]) == 1
