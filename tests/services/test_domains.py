"""Host names as custom domains and resolution compare them."""

from __future__ import annotations

import pytest

from tenantry.errors import ConfigurationError, InvalidInput
from tenantry.services.domains import parse_host
from tenantry.tenancy import ByHost


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("Shop.Example.COM", "shop.example.com"),
        ("shop.example.com:8443", "shop.example.com"),
        ("shop.example.com.", "shop.example.com"),
        ("  xn--bcher-kva.example ", "xn--bcher-kva.example"),
        ("localhost", "localhost"),
    ],
)
def test_hosts_are_kept_in_one_form(raw: str, stored: str) -> None:
    assert parse_host(raw) == stored


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "a b.com",
        "a..b.com",
        "-a.com",
        "a-.com",
        "a.com:port",
        "[::1]:80",
        "10.0.0.1",
        "bücher.example",
        "a" * 64 + ".com",
        "a/b.com",
    ],
)
def test_anything_else_is_refused(raw: str) -> None:
    with pytest.raises(InvalidInput):
        parse_host(raw)


@pytest.mark.parametrize("pattern", ["example.com", "shop-{slug}.example.com", "{slug}.{slug}.x"])
def test_a_host_pattern_must_start_with_the_slug_label(pattern: str) -> None:
    with pytest.raises(ConfigurationError, match="must start with one"):
        ByHost(pattern)
