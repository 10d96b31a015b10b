"""Requests that check and then write, racing: the same store slug, user email, billing plan
code or invoice number, the same store provisioned, at the same moment. On a server master
(or billing database) both can pass the check; the unique key (or the store's row lock)
settles it. The one refused gets the same Conflict the check gives, never a driver error (a
500 over HTTP) or a second job, and nothing of it is left behind."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import func, select

from tenantry.db.billing.models import BillingCustomer, BillingInvoice, BillingPlan
from tenantry.db.master.models import ProvisioningJob, Store, User, UserRole
from tenantry.errors import Conflict
from tenantry.operations import store_create
from tenantry.runtime import Platform
from tenantry.services import users
from tenantry.services.billing import customers, invoices, plans
from tests.dispatchers import KeptQueued
from tests.platform_fixtures import backend_platform
from tests.store_setup import request_sqlite_file

__all__ = ["backend_platform"]

#: Requests racing for one name.
RACERS = 6


def _race(attempt: Callable[[int], object]) -> list[str]:
    """``attempt(i)`` from RACERS threads released together; what each ended with."""
    start = threading.Barrier(RACERS)

    def run(i: int) -> str:
        start.wait()
        try:
            attempt(i)
        except Conflict as exc:
            return f"conflict: {exc.message}"
        return "created"

    with ThreadPoolExecutor(RACERS) as pool:
        return list(pool.map(run, range(RACERS)))


def test_one_store_wins_a_slug_and_the_others_are_a_conflict(
    backend_platform: Platform,
) -> None:
    platform = backend_platform
    for round_ in range(3):  # a race is won differently each time
        slug = f"raced-{round_}"

        def create(i: int, slug: str = slug) -> object:
            return store_create.create(
                platform, slug=slug, name=f"Racer {i}", plan="free", actor="cli:test"
            )

        ended = _race(create)
        assert ended.count("created") == 1, ended
        assert set(ended) - {"created"} <= {f"conflict: a store with slug {slug!r} exists already."}
        with platform.sessions() as master:
            assert master.scalar(select(func.count()).where(Store.slug == slug)) == 1
            winner = master.scalar(select(Store).where(Store.slug == slug))
            assert winner is not None
        with platform.billing_sessions() as billing:
            # The losers were refused before their billing customer was made: one a round.
            linked = list(billing.scalars(select(BillingCustomer.external_customer_id)))
        assert len(linked) == round_ + 1
        assert str(winner.id) in linked


def test_one_user_wins_an_email_and_the_others_are_a_conflict(
    backend_platform: Platform,
) -> None:
    platform = backend_platform

    def add(i: int) -> None:
        with platform.writer_sessions.begin() as session:
            users.add_user(
                session,
                email="Raced@Example.com",
                password=f"a long enough password {i}",
                role=UserRole.OPERATOR,
                actor="cli:test",
            )

    ended = _race(add)
    assert ended.count("created") == 1, ended
    assert set(ended) - {"created"} <= {"conflict: a user 'raced@example.com' already exists."}
    with platform.sessions() as master:
        assert master.scalar(select(func.count()).select_from(User)) == 1


def test_one_provisioning_job_per_store_however_many_ask_at_once(
    backend_platform: Platform,
) -> None:
    platform = backend_platform
    dispatcher = KeptQueued()  # the jobs stay queued: each request sees the others' job
    for round_ in range(3):
        slug = f"asked-{round_}"
        store_create.create(platform, slug=slug, name=slug, plan="free", actor="cli:test")

        def ask(i: int, slug: str = slug) -> object:
            return request_sqlite_file(platform, dispatcher, slug)

        ended = _race(ask)
        assert ended.count("created") == 1, ended
        refused = {e for e in ended if e != "created"}
        assert all(
            e.startswith(f"conflict: store {slug!r} already has provisioning job") for e in refused
        )
        with platform.sessions() as master:
            jobs = master.scalar(
                select(func.count())
                .select_from(ProvisioningJob)
                .join(Store, Store.id == ProvisioningJob.store_id)
                .where(Store.slug == slug)
            )
        assert jobs == 1
    assert len(dispatcher.jobs) == 3


def test_one_plan_code_and_one_invoice_number_per_app(backend_platform: Platform) -> None:
    platform = backend_platform
    billing = platform.billing_writer_sessions
    with billing.begin() as session:
        customer, _ = customers.create_customer(session, "shop-app", None, "Ann", "cust-1")
        customer_id = customer.id

    def plan(i: int) -> object:
        with billing.begin() as session:
            return plans.create_plan(
                session, "shop-app", code="pro", name=f"Pro {i}", amount_minor=900, currency="USD"
            )

    def invoice(i: int) -> object:
        with billing.begin() as session:
            owner = session.get(BillingCustomer, customer_id)
            assert owner is not None
            return invoices.create_invoice(
                session, owner, invoice_number="INV-1", currency="USD", amount_minor=100 + i
            )

    for attempt, model, message in (
        (plan, BillingPlan, "conflict: plan 'pro' exists already."),
        (invoice, BillingInvoice, "conflict: invoice number 'INV-1' is taken in this app."),
    ):
        ended = _race(attempt)
        assert ended.count("created") == 1, ended
        assert set(ended) - {"created"} <= {message}
        with platform.billing_sessions() as session:
            assert session.scalar(select(func.count()).select_from(model)) == 1
