"""Verifying a custom domain over DNS: the TXT record ``_tenantry.HOST`` must hold the token.
The resolver module is replaced by one answering from a dict (no real DNS)."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass

import pytest

from tenantry import Tenantry
from tests.platform_fixtures import platform, settings
from tests.tenancy.token_server import token_server
from tests.tenantry_fixtures import app

__all__ = ["app", "platform", "settings"]


@dataclass
class Answer:
    strings: list[bytes]


def fake_dns(records: dict[str, list[str]]) -> types.ModuleType:
    module = types.ModuleType("dns.resolver")

    def resolve(name: str, kind: str, lifetime: float) -> list[Answer]:
        assert kind == "TXT"
        if name not in records:
            raise LookupError("NXDOMAIN")
        return [Answer([text.encode()]) for text in records[name]]

    module.resolve = resolve  # type: ignore[attr-defined]
    return module


def test_a_txt_record_with_the_token_verifies(
    app: Tenantry, monkeypatch: pytest.MonkeyPatch
) -> None:
    app.stores.create("dns-shop")
    token = app.stores.add_domain("dns-shop", "dns.shop.test").token
    records: dict[str, list[str]] = {"_tenantry.dns.shop.test": ["v=spf1 -all"]}
    monkeypatch.setitem(sys.modules, "dns.resolver", fake_dns(records))
    with token_server({}) as nowhere:  # nothing served over HTTP
        wrong = app.stores.verify_domain("dns-shop", "dns.shop.test", address=nowhere)
        assert not wrong.verified
        assert "does not hold the token" in wrong.detail
        records["_tenantry.dns.shop.test"].append(token)
        found = app.stores.verify_domain("dns-shop", "dns.shop.test", address=nowhere)
    assert (found.verified, found.method) == (True, "dns")
    assert app.stores.domains("dns-shop")[0].verified_at is not None
