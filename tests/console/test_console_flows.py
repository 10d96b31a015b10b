"""End-to-end flows of the console in Chromium against a real `tenantry up`, on SQLite (a new
SQLite file per store) and on PostgreSQL (a store created-new on a registered server): sign in,
create and provision a store and watch the bar reach 100 % (across a reload), create an API
key (shown once), add a product through the API with it and see it counted, cancel an
operation, and a viewer refused an action (buttons disabled, the POST answered 403)."""

from __future__ import annotations

import re
import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.conftest import SERVER_URLS, require_server
from tests.console.conftest import PHONE, Console, Pages, screenshot, sign_in


def _servers(backend: str) -> dict[str, str]:
    """The servers to register: ``main-pg`` on PostgreSQL; none for SQLite files."""
    if backend == "sqlite":
        return {}
    require_server(backend)
    return {"main-pg": SERVER_URLS[backend]}


def _create_store(page: Any, console: Console, slug: str, server: str | None) -> None:
    page.goto(f"{console.base}/console/stores")
    page.get_by_label("Slug", exact=True).fill(slug)
    page.get_by_label("Name", exact=True).fill(f"Shop {slug}")
    page.get_by_label("Plan").select_option("starter")
    if server is not None:
        page.locator("#create-server").select_option(server)
    page.get_by_role("button", name="Create and provision").click()
    page.wait_for_url(f"{console.base}/console/stores/{slug}")


def _wait_succeeded(page: Any) -> None:
    done = page.locator(".progress[data-status=succeeded]")
    done.wait_for(timeout=60_000)
    assert done.locator("progress").get_attribute("value") == "100"
    assert "100 %" in done.inner_text()
    # An ended operation's fragment no longer asks to be polled.
    assert done.get_attribute("hx-trigger") is None


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.server)]
)
def test_operator_provisions_a_store_and_sees_its_key_and_usage(
    backend: str, start_console: Callable[..., Console], pages: Pages, server_slug: str
) -> None:
    console = start_console(servers=_servers(backend))
    server = "main-pg" if backend != "sqlite" else None
    page = pages.open()
    sign_in(page, console, console.operator)
    slug = server_slug if backend != "sqlite" else f"shop-{uuid.uuid4().hex[:6]}"

    _create_store(page, console, slug, server)
    # The bar is live while the job runs, and found again after a reload.
    running = page.locator(".progress[data-status]")
    running.wait_for()
    assert running.get_attribute("data-status") in {"queued", "running", "succeeded"}
    page.reload()
    _wait_succeeded(page)
    count = page.locator(".progress .count").inner_text()
    made = re.match(r"(\d+) of (\d+) tables", count)
    assert made, count
    assert made.group(1) == made.group(2), count
    assert int(made.group(2)) > 0, count
    # When the job ends, the page reloads itself: the store is active, no reload asked for.
    page.locator("h1 .status", has_text="active").wait_for(timeout=15_000)
    assert "Just ended: provision" in page.locator("#running-title").inner_text()
    facts = page.locator("dl.facts").inner_text()
    if server is not None:
        assert "main-pg" in facts
        assert "postgresql" in facts
    else:
        assert "sqlite" in facts
    assert re.search(r"Revision\s+\w+", facts)
    assert "unknown" not in facts
    screenshot(page, f"store-detail-{backend}")

    # A key made here is shown once; it works against the API.
    page.get_by_label("Key name").fill("storefront")
    page.get_by_role("button", name="Create key").click()
    key = page.locator("#new-key").inner_text().strip()
    assert key
    with httpx.Client(base_url=console.base, timeout=30) as http:
        added = http.post(
            f"/stores/{slug}/products",
            headers={"Authorization": f"Bearer {key}"},
            json={"sku": "SKU-1", "name": "First product"},
        )
    assert added.status_code == 201, added.text
    page.goto(f"{console.base}/console/stores/{slug}")
    assert page.locator("#new-key").count() == 0
    assert key not in page.content()
    products = page.locator('td[data-limit="Products"]').inner_text()
    assert products == "1"
    # Once the usage rollup has run (the worker's hourly job, run now), today's bar of the
    # products chart says 1.
    console.cli("stores", "usage", slug, "--refresh")
    page.reload()
    chart = page.locator("figure.chart", has_text="Products (total)")
    assert "peak 1," in chart.locator("figcaption").inner_text()
    assert chart.locator("g").last.locator("title").text_content().endswith(": 1")
    assert "storefront" in page.locator("#keys-title + *").inner_text() or "storefront" in (
        page.content()
    )

    # The health page runs the doctor's checks and counts the stores on each server.
    page.goto(f"{console.base}/console/health")
    master = page.locator('tr[data-check="master connects"]')
    assert master.locator(".status").inner_text() == "ok"
    if server is not None:
        on_server = page.locator("#servers-title ~ .table-wrap tbody tr", has_text="main-pg")
        assert on_server.locator("td").nth(2).inner_text() == "1"

    # The list shows it with its server and revision.
    page.goto(f"{console.base}/console/stores?q={slug}")
    row = page.locator("table.stores tbody tr", has_text=slug)
    assert "active" in row.inner_text()
    assert "starter" in row.inner_text()
    if server is not None:
        assert "main-pg" in row.inner_text()

    # A backup asked for here is taken by the worker; its progress shows, then its row.
    page.goto(f"{console.base}/console/stores/{slug}")
    page.get_by_label("Label", exact=True).fill("before-suspend")
    page.get_by_role("button", name="Back up now").click()
    page.wait_for_url(f"{console.base}/console/stores/{slug}")
    page.locator(".progress[data-status=succeeded]").wait_for(timeout=60_000)
    page.reload()
    backups = page.locator("#backups-title ~ .table-wrap tbody").inner_text()
    assert "stored" in backups or "verified" in backups, backups
    assert "manual" in backups

    # A product added after the backup is gone once the backup is restored in place: the
    # plan first, then the database's name typed to confirm.
    with httpx.Client(base_url=console.base, timeout=30) as http:
        later = http.post(
            f"/stores/{slug}/products",
            headers={"Authorization": f"Bearer {key}"},
            json={"sku": "SKU-2", "name": "Added after the backup"},
        )
        assert later.status_code == 201, later.text
    page.get_by_role("button", name="Restore…").click()
    # The plan is another page: wait for it rather than read the store page still shown.
    expect(page.locator("#plan-title")).to_be_visible()
    name = page.locator("label[for=restore-confirm] code").inner_text()
    page.locator("#restore-confirm").fill("wrong-name")
    page.get_by_role("button", name="Restore now").click()
    assert "is a live database" in page.locator("#error-restore").inner_text()
    page.locator("#restore-confirm").fill(name)
    page.get_by_role("button", name="Restore now").click()
    assert "Restored" in page.locator("#restored").inner_text(timeout=120_000)
    with httpx.Client(base_url=console.base, timeout=30) as http:
        listed = http.get(f"/stores/{slug}/products", headers={"Authorization": f"Bearer {key}"})
    assert listed.status_code == 200, listed.text
    assert [p["sku"] for p in listed.json()] == ["SKU-1"]

    # A deleted product comes back from the backup: the missing row listed first, then put
    # back once the table's name is typed.
    auth = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=console.base, timeout=30) as http:
        first_id = listed.json()[0]["id"]
        assert http.delete(f"/stores/{slug}/products/{first_id}", headers=auth).is_success
    page.goto(f"{console.base}/console/stores/{slug}")
    manual = page.locator("#backups-title ~ .table-wrap tbody tr", has_text="manual")
    manual.get_by_role("button", name="Recover rows…").click()
    page.get_by_label("Table").fill("products")
    page.get_by_role("button", name="Find missing rows").click()
    assert "products: 1 missing" in page.locator("#found-title").inner_text(timeout=120_000)
    assert "SKU-1" in page.locator("pre.sql").inner_text()
    page.locator("#recover-confirm").fill("products")
    page.get_by_role("button", name="Put them back").click()
    assert "Inserted 1 row(s)" in page.locator("#applied").inner_text(timeout=120_000)
    with httpx.Client(base_url=console.base, timeout=30) as http:
        back = http.get(f"/stores/{slug}/products", headers=auth).json()
    assert [p["sku"] for p in back] == ["SKU-1"]
    assert back[0]["id"] == first_id

    # Typed confirmation: a wrong slug is refused beside the form, the right one suspends.
    page.goto(f"{console.base}/console/stores/{slug}")
    page.locator("#suspend-confirm").fill("not-the-slug")
    page.get_by_role("button", name="Suspend").click()
    assert "type the store's slug" in page.locator("#error-suspend").inner_text()
    assert page.locator("h1 .status").inner_text() == "active"
    page.locator("#suspend-confirm").fill(slug)
    page.get_by_role("button", name="Suspend").click()
    # The answer redirects back to the same URL, so waiting for the URL proves nothing.
    expect(page.locator("h1 .status")).to_have_text("suspended")
    with console.api() as api:
        assert api.get(f"/stores/{slug}").json()["status"] == "suspended"

    # Deleting drops the database tenantry created.
    page.locator("#delete-confirm").fill(slug)
    page.get_by_label("also drop the database tenantry created").check()
    page.get_by_role("button", name="Delete store").click()
    page.wait_for_url(re.compile(r"/console/stores\?deleted="))
    assert f"Store {slug} was deleted." in page.locator(".notice").inner_text()
    with console.api() as api:
        assert api.get(f"/stores/{slug}").status_code == 404


def test_a_store_connects_an_existing_database(
    start_console: Callable[..., Console], pages: Pages, tmp_path: Path
) -> None:
    console = start_console()
    page = pages.open(PHONE)
    sign_in(page, console, console.operator)
    existing = tmp_path / "theirs.db"
    sqlite3.connect(existing).close()  # an empty database of the user's own
    page.get_by_label("Slug", exact=True).fill("theirs")
    page.get_by_label("Name", exact=True).fill("Theirs")
    page.get_by_label("Connect an existing database").check()
    page.get_by_label("Database URL").fill(f"sqlite:///{existing}")
    page.get_by_role("button", name="Create and provision").click()
    page.wait_for_url(f"{console.base}/console/stores/theirs")
    _wait_succeeded(page)
    page.reload()
    facts = page.locator("dl.facts").inner_text()
    assert "connected, not created by tenantry" in facts
    assert str(existing) in facts
    # Deleting never drops a database tenantry did not create: refused beside the form.
    page.locator("#delete-confirm").fill("theirs")
    page.get_by_label("also drop the database tenantry created").check()
    page.get_by_role("button", name="Delete store").click()
    assert "tenantry never drops it" in page.locator("#error-delete").inner_text()
    assert existing.exists()


@pytest.mark.server
def test_a_store_is_moved_from_its_sqlite_file_to_a_registered_server(
    start_console: Callable[..., Console], pages: Pages, server_slug: str
) -> None:
    console = start_console(servers=_servers("postgresql"))
    page = pages.open()
    sign_in(page, console, console.operator)
    _create_store(page, console, server_slug, "sqlite")  # a file, though a server is registered
    _wait_succeeded(page)
    page.reload()
    with console.api() as api:
        key = api.post(
            "/api-keys", json={"scope": "store", "store": server_slug, "name": "mover"}
        ).json()["key"]
    with httpx.Client(base_url=console.base, timeout=30) as http:
        added = http.post(
            f"/stores/{server_slug}/products",
            headers={"Authorization": f"Bearer {key}"},
            json={"sku": "MOVED-1", "name": "Comes along"},
        )
        assert added.status_code == 201, added.text

    page.get_by_label("Move to server").select_option("main-pg")
    page.locator("#move-confirm").fill(server_slug)
    page.get_by_role("button", name="Move", exact=True).click()
    assert "Moved to server main-pg" in page.locator("#moved").inner_text(timeout=120_000)
    facts = page.locator("dl.facts").inner_text()
    assert "main-pg" in facts
    assert "postgresql" in facts
    with httpx.Client(base_url=console.base, timeout=30) as http:
        listed = http.get(
            f"/stores/{server_slug}/products", headers={"Authorization": f"Bearer {key}"}
        )
    assert [p["sku"] for p in listed.json()] == ["MOVED-1"]


@pytest.mark.server
def test_a_store_is_moved_into_a_shared_database_from_the_console(
    start_console: Callable[..., Console], pages: Pages, server_slug: str
) -> None:
    console = start_console(servers=_servers("postgresql"))
    page = pages.open()
    sign_in(page, console, console.operator)
    _create_store(page, console, server_slug, "sqlite")
    _wait_succeeded(page)
    page.reload()
    shared = f"t_{server_slug.replace('-', '_')}_shared"  # dropped with the slug's databases
    try:
        page.get_by_label("Move to server").select_option("main-pg")
        page.get_by_label("Shared database (optional)").fill(shared)
        page.locator("#move-confirm").fill(server_slug)
        page.get_by_role("button", name="Move", exact=True).click()
        assert "Moved to server main-pg" in page.locator("#moved").inner_text(timeout=120_000)
        facts = page.locator("dl.facts").inner_text()
        assert shared in facts
        assert f"tsp_{shared}" in facts  # served through the shared database's pool login
    finally:
        _drop_shared(shared, server_slug)


def _drop_shared(database: str, slug: str) -> None:
    """Drop shared database ``database``, its pool login and the slug's tenant roles."""
    from sqlalchemy import text

    from tenantry.db.admin import drop_database
    from tenantry.db.engines import make_engine
    from tenantry.db.urls import parse_url

    admin = parse_url(SERVER_URLS["postgresql"])
    drop_database(admin.set(database=database))
    engine = make_engine(admin.set(database="postgres"), pooled=False)
    try:
        with engine.connect() as conn:
            stem = slug.replace("-", "_")
            roles = conn.execute(
                text("SELECT rolname FROM pg_roles WHERE rolname LIKE :a OR rolname = :p"),
                {"a": f"ts\\_{stem}\\_%", "p": f"tsp_{database}"},
            ).scalars()
            for role in list(roles):
                conn.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
            conn.commit()
    finally:
        engine.dispose()


def test_an_operation_is_cancelled_from_the_operations_page(
    start_console: Callable[..., Console], pages: Pages
) -> None:
    # Each provisioning job pauses at its migrate step: long enough to be cancelled there.
    console = start_console({"TENANTRY_FAILPOINTS": "provision.migrate=sleep:6"})
    page = pages.open(PHONE)
    sign_in(page, console, console.operator)
    slug = f"slow-{uuid.uuid4().hex[:6]}"
    _create_store(page, console, slug, None)
    page.goto(f"{console.base}/console/operations")
    row = page.locator("table.operations tbody tr", has_text=slug)
    # The bar updates every second without taking the focus off the Cancel button, which
    # the keyboard then presses.
    row.get_by_role("button", name="Cancel").focus()
    page.wait_for_timeout(2500)
    assert page.evaluate("document.activeElement.textContent") == "Cancel"
    page.keyboard.press("Enter")
    # htmx swaps the fragment in place, then it keeps polling until the job has stopped.
    row.locator(".progress[data-status=cancelled]").wait_for(timeout=60_000)
    screenshot(page, "operations-phone")
    with console.api() as api:
        ops = api.get("/operations", params={"store": slug}).json()["items"]
    assert [op["status"] for op in ops if op["kind"] == "provision"] == ["cancelled"]
    assert ops[0]["cancel_requested_at"] is not None


def test_a_viewer_sees_everything_and_is_refused_every_change(
    start_console: Callable[..., Console], pages: Pages
) -> None:
    console = start_console()
    with console.api() as api:
        assert api.post("/stores", json={"slug": "seen", "name": "Seen"}).status_code == 201
    page = pages.open()
    sign_in(page, console, console.viewer)
    assert "viewer" in page.locator("#read-only-note").inner_text()
    create = page.get_by_role("button", name="Create and provision")
    assert create.is_disabled()
    page.goto(f"{console.base}/console/stores/seen")
    for name in ("Provision", "Create key", "Delete store"):
        assert page.get_by_role("button", name=name).is_disabled(), name
    screenshot(page, "store-detail-viewer")

    # The POST itself (with the session's CSRF token) is refused by the permission guard.
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "tenantry_csrf")
    refused = page.request.post(
        f"{console.base}/console/stores/seen/delete",
        form={"csrf_token": csrf, "confirm": "seen"},
        max_redirects=0,
    )
    assert refused.status == 403
    assert "is read-only (viewer) and cannot" in refused.text()
    made = page.request.post(
        f"{console.base}/console/stores",
        form={"csrf_token": csrf, "slug": "viewer-made", "name": "No"},
        max_redirects=0,
    )
    assert made.status == 403
    with console.api() as api:
        assert api.get("/stores/seen").status_code == 200
        assert api.get("/stores/viewer-made").status_code == 404
