"""Idempotency-Key under concurrency, over real HTTP, on SQLite, PostgreSQL and MariaDB billing.

Proves that a second request with a key whose first request is still running is answered 409
with Retry-After and has no effect; that concurrent requests with one key create exactly one
subscription (counted in billing); and that a retry after completion gets the first body back.
A request that died after its effect but before the middleware stored its response (fail point
``idempotency.finish``) is replayed, even once its key would count as abandoned: the response
is kept in the transaction of the effect. A reservation with no effect is freed once abandoned.
Subscriptions are used because, unlike customers, creating one is not idempotent by itself:
only the Idempotency-Key stands between two identical POSTs and two subscriptions.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from tenantry.db.billing.models import BillingIdempotencyKey, BillingSubscription
from tenantry.db.types import utcnow
from tenantry.failpoints import FailPointError
from tenantry.services.billing.idempotency import ABANDONED, request_hash
from tests.api.conftest import BillingApi

#: How long the first request of a key is held in progress.
HELD_S = 3


def _subscribable(api: BillingApi) -> dict[str, Any]:
    """A customer of acme and a plan to subscribe it to; the subscription request body."""
    plan = api.client.post(
        "/billing/plans",
        headers=api.acme,
        json={"code": "pro", "name": "Pro", "amount_minor": 1900, "currency": "USD"},
    )
    assert plan.status_code == 201, plan.text
    customer = api.client.post(
        "/billing/customers", headers=api.acme, json={"external_customer_id": "race-1"}
    )
    assert customer.status_code == 201, customer.text
    return {"customer_id": customer.json()["id"], "plan_code": "pro"}


def _subscriptions(api: BillingApi) -> int:
    with api.platform.billing_sessions() as session:
        return int(session.scalar(select(func.count()).select_from(BillingSubscription)) or 0)


def _reserved(api: BillingApi, key: str) -> bool:
    """Whether ``key`` is reserved and its first request has not finished."""
    with api.platform.billing_sessions() as session:
        row = session.scalar(
            select(BillingIdempotencyKey).where(
                BillingIdempotencyKey.app_id == "acme", BillingIdempotencyKey.key == key
            )
        )
    return row is not None and row.status_code is None


def test_a_key_still_in_progress_is_409_with_retry_after_and_has_no_effect(
    billing_api: BillingApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = billing_api
    body = _subscribable(api)
    headers = {**api.acme, "Idempotency-Key": "sub-in-flight"}
    # The first request pauses once its key is reserved, before its route runs.
    monkeypatch.setenv("TENANTRY_FAILPOINTS", f"idempotency.reserved=sleep:{HELD_S}")
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(api.client.post, "/billing/subscriptions", headers=headers, json=body)
        deadline = time.monotonic() + 5
        while not _reserved(api, "sub-in-flight"):
            assert time.monotonic() < deadline, "the first request never reserved its key"
            assert not first.done(), first.result().text
            time.sleep(0.02)
        second = api.client.post("/billing/subscriptions", headers=headers, json=body)
        # Still held: the first request has not reached its route.
        assert not first.done()
        assert _subscriptions(api) == 0
    assert second.status_code == 409, second.text
    error = second.json()["error"]
    assert error["type"] == "Conflict"
    assert "still in progress" in error["message"]
    assert int(second.headers["Retry-After"]) >= 1
    assert "Idempotent-Replayed" not in second.headers
    created = first.result(timeout=15)
    assert created.status_code == 201, created.text
    assert "Idempotent-Replayed" not in created.headers
    assert _subscriptions(api) == 1
    # Once done, the same key gets the first response back, byte for byte, and no new row.
    replayed = api.client.post("/billing/subscriptions", headers=headers, json=body)
    assert replayed.status_code == 201
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.content == created.content
    assert _subscriptions(api) == 1
    # Another key is another request: a second subscription.
    other = api.client.post(
        "/billing/subscriptions", headers={**api.acme, "Idempotency-Key": "sub-2"}, json=body
    )
    assert other.status_code == 201
    assert other.json()["id"] != created.json()["id"]
    assert _subscriptions(api) == 2


def test_concurrent_requests_with_one_key_create_one_subscription(
    billing_api: BillingApi,
) -> None:
    api = billing_api
    body = _subscribable(api)
    headers = {**api.acme, "Idempotency-Key": "sub-storm"}
    clients = 8
    start = threading.Barrier(clients)

    def send(_: int) -> httpx.Response:
        start.wait(timeout=10)
        answer: httpx.Response = api.client.post(
            "/billing/subscriptions", headers=headers, json=body
        )
        return answer

    with ThreadPoolExecutor(clients) as pool:
        answers = list(pool.map(send, range(clients)))
    assert _subscriptions(api) == 1
    first = [a for a in answers if a.status_code == 201 and "Idempotent-Replayed" not in a.headers]
    assert len(first) == 1, [(a.status_code, a.text) for a in answers]
    for answer in answers:
        if answer is first[0]:
            continue
        # Every other request either saw the first still running or got its response.
        assert answer.status_code in (201, 409), answer.text
        if answer.status_code == 201:
            assert answer.headers["Idempotent-Replayed"] == "true"
            assert answer.content == first[0].content
        else:
            assert "still in progress" in answer.json()["error"]["message"]
            assert "Retry-After" in answer.headers
    # After the storm, a retry is a replay of the one subscription.
    replayed = api.client.post("/billing/subscriptions", headers=headers, json=body)
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.json()["id"] == first[0].json()["id"]
    assert _subscriptions(api) == 1


def _die_after_the_effect(
    api: BillingApi, monkeypatch: pytest.MonkeyPatch, headers: dict[str, str], body: Any
) -> None:
    """Send the request with the process 'dying' after the route committed, before the
    middleware stored the response (as after a SIGKILL there)."""
    monkeypatch.setenv("TENANTRY_FAILPOINTS", "idempotency.finish=raise")
    with pytest.raises(FailPointError):
        api.client.post("/billing/subscriptions", headers=headers, json=body)
    monkeypatch.delenv("TENANTRY_FAILPOINTS")
    assert _subscriptions(api) == 1
    # The middleware never stored it, but the route's transaction kept the response.
    with api.platform.billing_sessions() as session:
        kept = session.scalar(
            select(BillingIdempotencyKey.status_code).where(
                BillingIdempotencyKey.key == headers["Idempotency-Key"]
            )
        )
    assert kept == 201


def _json_bytes(body: Any) -> bytes:
    return json.dumps(body).encode()


def _the_subscription_id(api: BillingApi) -> str:
    with api.platform.billing_sessions() as session:
        return str(session.scalars(select(BillingSubscription.id)).one())


def test_a_request_that_died_after_its_effect_is_replayed_not_applied_again(
    billing_api: BillingApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = billing_api
    body = _subscribable(api)
    headers = {**api.acme, "Idempotency-Key": "sub-died"}
    _die_after_the_effect(api, monkeypatch, headers, body)
    retry = api.client.post("/billing/subscriptions", headers=headers, json=body)
    # The response was kept in the transaction that made the subscription: the retry gets it.
    assert retry.status_code == 201, retry.text
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json()["id"] == _the_subscription_id(api)
    assert _subscriptions(api) == 1


def test_a_retry_after_the_key_would_count_as_abandoned_makes_no_second_subscription(
    billing_api: BillingApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = billing_api
    body = _subscribable(api)
    headers = {**api.acme, "Idempotency-Key": "sub-abandoned"}
    _die_after_the_effect(api, monkeypatch, headers, body)
    # The reservation is older than ABANDONED, as a client retrying a minute later sees it.
    with api.platform.billing_sessions.begin() as session:
        session.execute(
            update(BillingIdempotencyKey)
            .where(BillingIdempotencyKey.key == "sub-abandoned")
            .values(created_at=utcnow() - ABANDONED - ABANDONED)
        )
    retry = api.client.post("/billing/subscriptions", headers=headers, json=body)
    assert retry.status_code == 201, retry.text
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json()["id"] == _the_subscription_id(api)
    assert _subscriptions(api) == 1


def test_a_request_that_died_before_its_effect_frees_its_key_once_abandoned(
    billing_api: BillingApi,
) -> None:
    """A reservation with no effect committed (the process died before its route finished) is
    released after ABANDONED, and the retry then runs as a first request."""
    api = billing_api
    body = _subscribable(api)
    with api.platform.billing_sessions.begin() as session:
        session.add(
            BillingIdempotencyKey(
                app_id="acme",
                key="sub-never-ran",
                request_hash=request_hash("POST", "/billing/subscriptions", _json_bytes(body)),
                created_at=utcnow() - ABANDONED - ABANDONED,
                expires_at=utcnow() + ABANDONED,
            )
        )
    retry = api.client.post(
        "/billing/subscriptions",
        headers={
            **api.acme,
            "Idempotency-Key": "sub-never-ran",
            "Content-Type": "application/json",
        },
        content=_json_bytes(body),
    )
    assert retry.status_code == 201, retry.text
    assert "Idempotent-Replayed" not in retry.headers
    assert _subscriptions(api) == 1
