"""Every name checked by a pattern is checked whole: a trailing newline is not a valid end.

Python's ``$`` also matches before a final newline, so ``re.match`` with ``^…$`` accepted
``"my-shop\\n"`` as a slug and ``"db\\n"`` as a database name for DDL.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy.engine import make_url

from tenantry.db.admin import _checked_name
from tenantry.errors import ConfigurationError, InvalidInput
from tenantry.services.billing import validation
from tenantry.services.refs import parse_ref
from tenantry.services.stores import validate_slug

CHECKS: list[tuple[str, Callable[[str], object], str]] = [
    ("store slug", validate_slug, "my-shop"),
    ("app id", validation.app_id, "client-portal"),
    ("external id", validation.external_id, "cus_42"),
    ("database name", lambda name: _checked_name(make_url(f"sqlite:///{name}")), "tenant_db"),
]


@pytest.mark.parametrize(("what", "check", "good"), CHECKS, ids=[c[0] for c in CHECKS])
@pytest.mark.parametrize("tail", ["\n", "\r\n", "\n\n"])
def test_a_trailing_newline_is_refused(
    what: str, check: Callable[[str], object], good: str, tail: str
) -> None:
    assert check(good) is not None
    with pytest.raises((InvalidInput, ConfigurationError)):
        check(good + tail)


def test_an_id_prefix_with_a_trailing_newline_is_not_an_id() -> None:
    # parse_ref strips surrounding space on purpose (ids pasted from a terminal); a newline
    # inside is still refused.
    assert parse_ref("0a1b2c") == "0a1b2c"
    assert parse_ref("0a1b\n2c") is None
