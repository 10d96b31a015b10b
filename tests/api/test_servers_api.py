"""POST/DELETE /database-servers and connect_existing: URLs validated, servers checked."""

from __future__ import annotations

import pytest

from tenantry.db.admin import drop_database
from tenantry.db.urls import parse_url
from tests.api.conftest import Api
from tests.conftest import SERVER_URLS, require_server

SECRET = "Zq7xK9wJ"

#: Each refused with 422 naming ``url``; none may echo any part of SECRET.
BAD_URLS = [
    f"postgresql://u:{SECRET}@127.0.0.1:abc/x",
    f"postgresql://admin:ab@cd:{SECRET}@127.0.0.1:port/postgres",
    f"postgresql://u:{SECRET}@127.0.0.1:99999/x",
    f"postgresql://u:{SECRET}@host\x00name/x",
    f"postgresql://u:{SECRET}@127.0.0.1/x?sslmode=bogus",
    f"postgresql://admin:{SECRET}/postgres",
    f"postgresql://u:ab?{SECRET}@127.0.0.1/x",
    "postgresql://",
    f"mysql://u:{SECRET}@[nope]:3306",
    f"sqlite:///{SECRET}.db",
]


def _assert_safe(text: str) -> None:
    for i in range(len(SECRET) - 2):
        assert SECRET[i : i + 3] not in text


@pytest.mark.parametrize("url", BAD_URLS)
def test_a_bad_server_url_is_a_422_naming_the_field(api: Api, url: str) -> None:
    answer = api.client.post(
        "/database-servers", json={"name": "bad", "url": url}, headers=api.admin
    )
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["message"].startswith("url ")
    assert error["hint"]
    _assert_safe(answer.text)
    assert api.client.get("/database-servers", headers=api.admin).json() == []


@pytest.mark.parametrize("url", BAD_URLS[:-1])
def test_a_bad_connect_existing_url_is_a_422_naming_the_field(api: Api, url: str) -> None:
    made = api.client.post("/stores", json={"slug": "shop", "name": "Shop"}, headers=api.admin)
    assert made.status_code == 201
    answer = api.client.post(
        "/stores/shop/provision",
        json={"mode": "connect_existing", "url": url},
        headers=api.admin,
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["message"].startswith("url ")
    _assert_safe(answer.text)
    assert api.client.get("/stores/shop", headers=api.admin).json()["status"] != "provisioning"


def test_an_unreachable_server_is_a_422_and_not_saved(api: Api) -> None:
    answer = api.client.post(
        "/database-servers",
        json={"name": "ghost", "url": f"postgresql://admin:{SECRET}@127.0.0.1:1/postgres"},
        headers=api.admin,
    )
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert "was not saved" in error["message"]
    assert (
        "cannot connect to postgresql+psycopg://admin:***@127.0.0.1:1/postgres"
        in (error["message"])
    )
    _assert_safe(answer.text)
    assert api.client.get("/database-servers", headers=api.admin).json() == []


def test_a_server_is_deleted_only_when_no_store_database_lives_there(api: Api) -> None:
    require_server("postgresql")
    for name in ("pg-main", "pg-spare"):
        added = api.client.post(
            "/database-servers",
            json={"name": name, "url": SERVER_URLS["postgresql"]},
            headers=api.admin,
        )
        assert added.status_code == 201, added.text
    result = api.provisioned_store("on-pg", mode="create_new", server="pg-main")
    assert result["job"]["status"] == "completed", result["job"]
    store_id = result["store"]["id"].replace("-", "")
    try:
        refused = api.client.delete("/database-servers/pg-main", headers=api.admin)
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"]["type"] == "Conflict"
        assert "on-pg" in refused.json()["error"]["message"]

        store_key = api.store_key("on-pg")
        assert api.client.delete("/database-servers/pg-spare", headers=store_key).status_code in (
            401,
            403,
        )
        unused = api.client.delete("/database-servers/pg-spare", headers=api.admin)
        assert unused.status_code == 204, unused.text
        listed = api.client.get("/database-servers", headers=api.admin).json()
        assert [s["name"] for s in listed] == ["pg-main"]
        missing = api.client.delete("/database-servers/pg-spare", headers=api.admin)
        assert missing.status_code == 404
    finally:
        drop_database(parse_url(SERVER_URLS["postgresql"]).set(database=f"t_on_pg_{store_id[:8]}"))
