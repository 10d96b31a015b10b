"""Fixtures of the API, CLI and platform tests, shared by the metrics tests."""

from __future__ import annotations

from tests.api.conftest import api, billing_api
from tests.cli.conftest import cli
from tests.platform_fixtures import backend_platform, platform, settings

__all__ = ["api", "backend_platform", "billing_api", "cli", "platform", "settings"]
