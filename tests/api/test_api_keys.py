"""API keys over HTTP: which app a key acts for, and keys that stopped being valid.

Proves that an admin key with ``X-App-Id`` acts for that app (what it creates belongs to it,
its idempotency keys are that app's), that a malformed app id is a 422 naming the header and
a missing one a 403 saying what to send; that an app key naming another app in ``X-App-Id``
is refused (403) and changes nothing; and that revoked and expired keys are refused with 401
and a message, including a key revoked (with the CLI) while its client keeps using it, whose
stored idempotent responses are not handed out any more either.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update

from tenantry.db.billing.models import BillingCustomer
from tenantry.db.master.models import ApiKey
from tenantry.db.types import utcnow
from tenantry.services import apikeys
from tests.api.conftest import Api
from tests.cli.conftest import Invoke, cli

__all__ = ["cli"]


def _app_key(api: Api, app_id: str) -> tuple[dict[str, str], str]:
    """Headers for a new key of ``app_id``, and its prefix."""
    with api.platform.sessions.begin() as session:
        new = apikeys.create_key(
            session, name=app_id, scope=apikeys.Scope.APP, app_id=app_id, actor="cli:test"
        )
    return api.as_key(new.plaintext), new.key.prefix


def _customers(api: Api) -> list[tuple[str, str]]:
    with api.platform.billing_sessions() as session:
        rows = session.execute(
            select(BillingCustomer.app_id, BillingCustomer.external_customer_id)
        ).all()
    return sorted((r[0], r[1]) for r in rows)


def _error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    return dict(response.json()["error"])


def test_an_admin_key_acts_for_the_app_named_in_x_app_id(api: Api) -> None:
    acme, _ = _app_key(api, "acme")
    globex, _ = _app_key(api, "globex")
    as_acme = {**api.admin, "X-App-Id": "acme"}
    made = api.client.post(
        "/billing/customers", headers=as_acme, json={"external_customer_id": "by-admin"}
    )
    assert made.status_code == 201, made.text
    assert made.json()["app_id"] == "acme"
    assert _customers(api) == [("acme", "by-admin")]
    # acme's own key sees it; globex's does not, not even by id.
    mine = api.client.get(f"/billing/customers/{made.json()['id']}", headers=acme)
    assert mine.status_code == 200
    assert mine.json() == made.json()
    _error(api.client.get(f"/billing/customers/{made.json()['id']}", headers=globex), 404)
    assert api.client.get("/billing/customers", headers=globex).json()["items"] == []
    # The admin's reads are scoped the same way.
    listed = api.client.get("/billing/customers", headers={**api.admin, "X-App-Id": "globex"})
    assert listed.json()["items"] == []


def test_an_admins_idempotency_keys_belong_to_the_app_it_acts_for(api: Api) -> None:
    body = {"external_customer_id": "same-body"}
    for app in ("acme", "globex"):
        headers = {**api.admin, "X-App-Id": app, "Idempotency-Key": "onboard-1"}
        made = api.client.post("/billing/customers", headers=headers, json=body)
        # Not a replay of the other app's response: that would hand acme's record to globex.
        assert made.status_code == 201, made.text
        assert "Idempotent-Replayed" not in made.headers
        assert made.json()["app_id"] == app
    assert _customers(api) == [("acme", "same-body"), ("globex", "same-body")]
    # And each app's retry replays that app's own first response.
    for app in ("acme", "globex"):
        headers = {**api.admin, "X-App-Id": app, "Idempotency-Key": "onboard-1"}
        again = api.client.post("/billing/customers", headers=headers, json=body)
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.json()["app_id"] == app


def test_an_admin_key_needs_a_well_formed_app_id(api: Api) -> None:
    for bad in ("Acme", "acme corp", "a" * 65, "-acme"):
        refused = _error(
            api.client.post(
                "/billing/customers",
                headers={**api.admin, "X-App-Id": bad, "Idempotency-Key": f"k-{bad}"},
                json={"external_customer_id": "x"},
            ),
            422,
        )
        assert "x-app-id" in refused["message"].lower(), refused
        assert "lowercase" in refused["message"], refused
    missing = _error(
        api.client.post(
            "/billing/customers", headers=api.admin, json={"external_customer_id": "x"}
        ),
        403,
    )
    assert "X-App-Id" in missing["message"]
    assert _customers(api) == []


def test_an_app_key_cannot_act_for_another_app(api: Api) -> None:
    acme, _ = _app_key(api, "acme")
    for extra in ({}, {"Idempotency-Key": "cross-1"}):
        refused = _error(
            api.client.post(
                "/billing/customers",
                headers={**acme, "X-App-Id": "globex", **extra},
                json={"external_customer_id": "cross"},
            ),
            403,
        )
        assert "'acme'" in refused["message"], refused
        assert "'globex'" in refused["message"], refused
        listed = api.client.get("/billing/customers", headers={**acme, "X-App-Id": "globex"})
        _error(listed, 403)
    assert _customers(api) == []
    # Naming its own app is fine.
    own = api.client.post(
        "/billing/customers",
        headers={**acme, "X-App-Id": "acme"},
        json={"external_customer_id": "own"},
    )
    assert own.status_code == 201, own.text
    assert _customers(api) == [("acme", "own")]


def test_revoked_and_expired_keys_are_refused_with_a_message(api: Api, cli: Invoke) -> None:
    revoked, revoked_prefix = _app_key(api, "acme")
    expired, expired_prefix = _app_key(api, "acme")
    done = cli("apikeys", "revoke", revoked_prefix)
    assert done.exit_code == 0, done.output
    with api.platform.sessions.begin() as session:
        session.execute(
            update(ApiKey)
            .where(ApiKey.prefix == expired_prefix)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    for headers in (revoked, expired):
        for response in (
            api.client.get("/billing/customers", headers=headers),
            api.client.post(
                "/billing/customers",
                headers={**headers, "Idempotency-Key": "k1"},
                json={"external_customer_id": "x"},
            ),
        ):
            error = _error(response, 401)
            assert "revoked or has expired" in error["message"], error
    assert _customers(api) == []


def test_a_key_revoked_while_in_use_is_refused_from_the_next_request(api: Api, cli: Invoke) -> None:
    acme, prefix = _app_key(api, "acme")
    idem = {**acme, "Idempotency-Key": "before-revoke"}
    body = {"external_customer_id": "kept"}
    created = api.client.post("/billing/customers", headers=idem, json=body)
    assert created.status_code == 201, created.text
    for _ in range(3):
        assert api.client.get("/billing/customers", headers=acme).status_code == 200
    assert cli("apikeys", "revoke", prefix).exit_code == 0
    error = _error(api.client.get("/billing/customers", headers=acme), 401)
    assert "revoked" in error["message"]
    # The response stored under its idempotency key is not handed to a revoked key.
    replay = api.client.post("/billing/customers", headers=idem, json=body)
    _error(replay, 401)
    assert "Idempotent-Replayed" not in replay.headers
    write = api.client.post(
        "/billing/customers", headers=acme, json={"external_customer_id": "after"}
    )
    _error(write, 401)
    with api.platform.billing_sessions() as session:
        assert session.scalar(select(func.count()).select_from(BillingCustomer)) == 1
    # The admin key was untouched by the revocation.
    assert (
        api.client.get("/billing/customers", headers={**api.admin, "X-App-Id": "acme"}).json()[
            "total"
        ]
        == 1
    )
