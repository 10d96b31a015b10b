"""End-to-end flows of the Backups, Billing and Fleet pages in Chromium against a real
`tenantry up`, on SQLite and on PostgreSQL: a backup run from the Backups page watched until
it is stored; a webhook event that could not be applied (its customer unknown) replayed from
the Billing page once the customer exists, and seen processed; a fleet migration started
after its SQL preview, followed live to the end, then verified."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tenantry.db.admin import create_database, drop_database
from tenantry.db.urls import parse_url
from tests.conftest import SERVER_URLS, drop_schema_templates, require_server
from tests.console.billing_events import add_secret, deliver, subscription_event
from tests.console.conftest import Console, Pages, screenshot, sign_in
from tests.helpers import free_port, stop_process, wait_until_healthy

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.server)]


def _servers(backend: str) -> dict[str, str]:
    if backend == "sqlite":
        return {}
    require_server(backend)
    return {"main-pg": SERVER_URLS[backend]}


def _provisioned(console: Console, slug: str, server: str | None) -> None:
    with console.api() as api:
        assert api.post("/stores", json={"slug": slug, "name": f"Shop {slug}"}).is_success
        started = api.post(f"/stores/{slug}/provision", json={"server": server})
        assert started.status_code == 202, started.text
        deadline = time.monotonic() + 90
        while (store := api.get(f"/stores/{slug}").json())["database_status"] != "active":
            assert store["database_status"] != "failed", store
            assert time.monotonic() < deadline, store
            time.sleep(0.3)


def _slug(backend: str, server_slug: str) -> str:
    return server_slug if backend != "sqlite" else f"shop-{uuid.uuid4().hex[:6]}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_backup_is_run_from_the_backups_page_and_watched_to_the_end(
    backend: str, start_console: Callable[..., Console], pages: Pages, server_slug: str
) -> None:
    console = start_console(servers=_servers(backend))
    slug = _slug(backend, server_slug)
    _provisioned(console, slug, "main-pg" if backend != "sqlite" else None)
    page = pages.open()
    sign_in(page, console, console.operator)
    page.goto(f"{console.base}/console/backups")
    page.get_by_role("searchbox", name="Store").fill(slug)
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name=slug, exact=True).click()
    page.wait_for_url(f"{console.base}/console/backups/db/store:{slug}")

    page.get_by_label("Label").fill("from-the-console")
    page.get_by_role("button", name=f"Back up store:{slug} now").click()
    page.wait_for_url(f"{console.base}/console/backups/db/store:{slug}")
    ours = page.locator("table.artifacts tbody tr", has_text="from-the-console")
    # Its bar is live while a worker takes it; the page reloads itself once it ended.
    ours.locator(".status", has_text="stored").or_(
        ours.locator(".status", has_text="verified")
    ).wait_for(timeout=90_000)
    assert "B" in ours.inner_text()  # its size, in bytes or more
    screenshot(page, f"backup-artifacts-{backend}")
    with console.api() as api:
        listed = api.get("/backups", params={"db": f"store:{slug}"}).json()
    [made] = [b for b in listed if b["label"] == "from-the-console"]
    assert made["status"] in ("stored", "verified")
    assert made["size_bytes"] > 0

    page.goto(f"{console.base}/console/backups?q={slug}")
    row = page.locator(f'tr[data-scope="store:{slug}"]')
    assert "no good backup" not in row.inner_text()
    assert "newest good backup" in row.inner_text() or "restore test" in row.inner_text()


@pytest.fixture
def billing_url(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """The server's billing database: a SQLite file in its data dir, or a fresh PostgreSQL
    database (dropped after the test)."""
    backend = request.node.callspec.params["backend"]
    if backend == "sqlite":
        yield {}
        return
    require_server(backend)
    url = parse_url(SERVER_URLS[backend]).set(database=f"tt_cbill_{uuid.uuid4().hex[:10]}")
    create_database(url)
    try:
        yield {"DATABASE_URL_BILLING": url.render_as_string(hide_password=False)}
    finally:
        drop_database(url)


def _event_status(console: Console, event_id: str) -> dict[str, Any]:
    with console.api() as api:
        events = api.get("/billing/events", headers={"X-App-Id": "acme"}).json()
    [event] = [e for e in events if e["event_id"] == event_id]
    return dict(event)


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_event_that_could_not_be_applied_is_replayed_and_processed(
    backend: str,
    billing_url: dict[str, str],
    start_console: Callable[..., Console],
    pages: Pages,
) -> None:
    console = start_console(billing_url)
    add_secret(console, "acme")
    event = subscription_event("cust-late")
    deliver(console, "acme", event)
    deadline = time.monotonic() + 60
    while (first := _event_status(console, event["id"]))["status"] in ("received", "processing"):
        assert time.monotonic() < deadline, first
        time.sleep(0.3)
    assert first["status"] == "ignored"  # its customer is not in billing yet

    page = pages.open()
    sign_in(page, console, console.operator)
    page.goto(f"{console.base}/console/billing?app=acme&tab=events")
    row = page.locator(f'tr[data-event="{event["id"]}"]')
    assert "no customer" in row.inner_text()
    with console.api() as api:
        made = api.post(
            "/billing/customers",
            headers={"X-App-Id": "acme"},
            json={"external_customer_id": "cust-late"},
        )
        assert made.status_code == 201, made.text
    row.get_by_role("button", name="Replay").click()
    page.wait_for_url(f"{console.base}/console/billing?*")
    assert event["id"] in page.locator("#replayed").inner_text()
    deadline = time.monotonic() + 60
    while "processed" not in page.locator(f'tr[data-event="{event["id"]}"]').inner_text():
        assert time.monotonic() < deadline, page.locator("table").last.inner_text()
        time.sleep(0.5)
        page.reload()
    screenshot(page, f"billing-replayed-{backend}")
    applied = _event_status(console, event["id"])
    assert (applied["status"], applied["attempts"]) == ("processed", 2)
    with console.api() as api:
        subs = api.get("/billing/subscriptions", headers={"X-App-Id": "acme"}).json()
    assert [(s["status"], s["customer_id"]) for s in subs] == [("active", made.json()["id"])]
    page.goto(f"{console.base}/console/billing?app=acme&tab=subscriptions")
    assert "active" in page.locator("table.billing-subscriptions tbody").inner_text()


PLUGIN = '''"""A tenant schema whose models follow the revision files present."""
from pathlib import Path

from sqlalchemy import Column, Integer, MetaData, String, Table

SCHEMA_NAME = "consoleshop"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
HAS_NOTE = (MIGRATIONS / "versions" / "c002_note.py").exists()

metadata = MetaData()
products = Table(
    "products",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    *([Column("note", String(200), nullable=True)] if HAS_NOTE else []),
)
'''
REVISION = '''"""{doc}"""
import sqlalchemy as sa
from alembic import op

revision = "{rev}"
down_revision = {down}
branch_labels = None
depends_on = None


def upgrade() -> None:
    {upgrade}


def downgrade() -> None:
    {downgrade}
'''
C001 = REVISION.format(
    doc="products",
    rev="c001",
    down="None",
    upgrade='op.create_table("products", sa.Column("id", sa.Integer(), primary_key=True), '
    'sa.Column("name", sa.String(200), nullable=False))',
    downgrade='op.drop_table("products")',
)
C002 = REVISION.format(
    doc="product note",
    rev="c002",
    down='"c001"',
    upgrade='op.add_column("products", sa.Column("note", sa.String(200), nullable=True))',
    downgrade='op.drop_column("products", "note")',
)


@pytest.fixture
def plugin_templates() -> Iterator[None]:
    """The builder's templates of the plug-in's schema are dropped after the test (its store
    on PostgreSQL was cloned from one)."""
    yield
    drop_schema_templates("consoleshop")  # SCHEMA_NAME in PLUGIN


def _plugin(tmp: Path) -> tuple[dict[str, str], Path]:
    """A tenant schema plug-in at c001; the environment that uses it and its versions dir."""
    module = f"consoleshop_{uuid.uuid4().hex[:8]}"
    package = tmp / "plug" / module
    versions = package / "migrations" / "versions"
    versions.mkdir(parents=True)
    (package / "__init__.py").write_text(PLUGIN)
    (package / "migrations" / "env.py").write_text(
        "from tenantry.db.alembic_env import run\n\nrun()\n"
    )
    (versions / "c001_products.py").write_text(C001)
    env = {
        "TENANTRY_TENANT_SCHEMA": module,
        "PYTHONPATH": os.pathsep.join([str(tmp / "plug"), os.getcwd()]),
    }
    return env, versions


def _restart(console: Console) -> None:
    """Stop the server and start it again on the same installation (new code deployed)."""
    import subprocess
    import sys

    stop_process(console.proc)
    port = free_port()
    with console.log.open("ab") as out:
        console.proc = subprocess.Popen(
            [sys.executable, "-m", "tenantry", "up", "--port", str(port), "--no-access-log"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=console.env,
            start_new_session=True,
        )
    console.base = f"http://127.0.0.1:{port}"
    wait_until_healthy(console.base, console.proc, console.log, seconds=60)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_fleet_migration_starts_after_its_preview_and_is_followed_to_the_end(
    backend: str,
    plugin_templates: None,
    start_console: Callable[..., Console],
    pages: Pages,
    server_slug: str,
    tmp_path: Path,
) -> None:
    env, versions = _plugin(tmp_path)
    console = start_console(env, servers=_servers(backend))
    slug = _slug(backend, server_slug)
    _provisioned(console, slug, "main-pg" if backend != "sqlite" else None)
    (versions / "c002_note.py").write_text(C002)  # the new release's revision
    _restart(console)

    page = pages.open()
    sign_in(page, console, console.operator)
    page.goto(f"{console.base}/console/fleet")
    assert "head revision is c002" in page.locator("main").inner_text()
    assert page.locator("figure.counts figcaption").inner_text() == (
        "Tenants per revision: c001 1."
    )
    assert slug in page.locator("#lagging-title ~ p").inner_text()

    page.get_by_role("link", name="Preview migration to head").click()
    dialect = "sqlite" if backend == "sqlite" else "postgresql"
    plan = page.locator("section.card", has_text=f"{dialect}: 1 tenant from c001")
    assert "ADD COLUMN note" in plan.locator("pre.sql").inner_text()
    assert slug in plan.inner_text()
    screenshot(page, f"fleet-preview-{backend}")
    page.get_by_role("button", name="Migrate the fleet to c002").click()
    page.wait_for_url(f"{console.base}/console/fleet")
    # Followed live; the page reloads itself when the run ends.
    page.locator("#run-title", has_text="Last run").wait_for(timeout=90_000)
    done = page.locator(".progress[data-status=succeeded]")
    assert "1 of 1 tenants" in done.inner_text()
    counts = page.locator("#run-counts").inner_text()
    assert "1 migrated, 0 already current, 0 failed of 1" in counts
    assert page.locator("figure.counts figcaption").inner_text() == (
        "Tenants per revision: c002 1 (head)."
    )
    assert "Every active tenant is at head." in page.content()

    page.get_by_role("button", name="Verify every tenant database").click()
    result = page.locator("#verify-result")
    assert "Verified 1 tenant database: 0 with problems" in result.inner_text()
    screenshot(page, f"fleet-{backend}")
