"""``/stores/{ref}/domains``: claim, verify, list and remove a store's custom hosts."""

from __future__ import annotations

import pytest

from tenantry.operations import domain_verify
from tests.api.conftest import Api, api, platform, settings
from tests.tenancy.token_server import token_server

__all__ = ["api", "platform", "settings"]


def test_domains_over_http(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    api.provisioned_store("web-shop")
    base = "/stores/web-shop/domains"
    added = api.client.post(base, json={"host": "WWW.Web-Shop.test"}, headers=api.admin)
    assert added.status_code == 201, added.text
    token = added.json()["token"]
    assert added.json()["host"] == "www.web-shop.test"
    assert added.json()["verified"] is False
    again = api.client.post(base, json={"host": "www.web-shop.test"}, headers=api.admin)
    assert again.status_code == 409
    bad = api.client.post(base, json={"host": "no such host"}, headers=api.admin)
    assert bad.status_code == 422
    assert "not a valid host name" in bad.text

    store_key = api.store_key("web-shop")
    refused = api.client.post(base, json={"host": "x.test"}, headers=store_key)
    assert refused.status_code == 403
    assert api.client.get(base, headers=store_key).json()[0]["host"] == "www.web-shop.test"

    with token_server({"www.web-shop.test": token}) as local:
        monkeypatch.setattr(domain_verify, "system_address", local)
        verified = api.client.post(f"{base}/www.web-shop.test/verify", headers=api.admin)
    assert verified.status_code == 200, verified.text
    assert verified.json()["verified"] is True
    assert api.client.get(base, headers=api.admin).json()[0]["verified"] is True
    gone = api.client.delete(f"{base}/www.web-shop.test", headers=api.admin)
    assert gone.status_code == 204
    assert api.client.get(base, headers=api.admin).json() == []
    assert api.client.delete(f"{base}/www.web-shop.test", headers=api.admin).status_code == 404
