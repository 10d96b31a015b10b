"""The console as a new user meets it, in Chromium at 1280 px and 390 px: every page reached by
following links from the navigation (every ``a[href]`` under /console, crawled) answers 200,
logs no browser error and fits the screen; the Fleet, Backups and Billing pages show what
they are about; and a viewer sees their buttons disabled and their POSTs refused (403)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.console.billing_events import add_secret, deliver, subscription_event
from tests.console.conftest import DESKTOP, PHONE, Console, Pages, screenshot, sign_in

#: A crawl stops after this many pages (the seeded console has far fewer).
MAX_PAGES = 120


def _seed(console: Console) -> None:
    """Two stores (one provisioned and backed up), an app with a secret and an event."""
    with console.api() as api:
        for slug in ("alpha", "beta"):
            made = api.post("/stores", json={"slug": slug, "name": slug.title() + " shop"})
            assert made.status_code == 201, made.text
        assert api.post("/stores/alpha/provision", json={}).status_code == 202
        deadline = time.monotonic() + 60
        while api.get("/stores/alpha").json()["database_status"] != "active":
            assert time.monotonic() < deadline, "alpha was not provisioned"
            time.sleep(0.3)
        backup = api.post("/backups", json={"db": "store:alpha"})
        assert backup.status_code == 202, backup.text
    add_secret(console, "acme")
    deliver(console, "acme", subscription_event("nobody-yet"))
    with console.api() as api:
        deadline = time.monotonic() + 60
        while True:  # the server's webhook worker applies it in the background
            events = api.get("/billing/events", headers={"X-App-Id": "acme"}).json()
            if events and events[0]["status"] != "received":
                break
            assert time.monotonic() < deadline, events
            time.sleep(0.3)


def _links(page: Any, base: str) -> list[str]:
    hrefs: list[str] = page.locator("a[href]").evaluate_all("els => els.map(e => e.href)")
    return sorted({h.split("#")[0] for h in hrefs if h.startswith(base + "/console")})


@pytest.mark.parametrize(("viewport", "label"), [(DESKTOP, "desktop"), (PHONE, "phone")])
def test_every_page_reached_from_the_navigation_answers_and_fits(
    viewport: dict[str, int], label: str, start_console: Callable[..., Console], pages: Pages
) -> None:
    console = start_console()
    _seed(console)
    page = pages.open(viewport)
    sign_in(page, console, console.operator)
    nav = page.locator("header nav a").evaluate_all("els => els.map(e => e.textContent)")
    assert nav == ["Stores", "Operations", "Fleet", "Backups", "Billing", "Health"]

    queue = _links(page, console.base)
    seen: dict[str, int] = {}
    while queue and len(seen) < MAX_PAGES:
        url = queue.pop(0)
        if url in seen:
            continue
        # Loaded with its scripts and styles (goto waits for "load"). Not "networkidle": that
        # is 500 ms of quiet per page, and the only request a console page makes after load
        # is an operation's progress poll, a second later.
        answer = page.goto(url)
        assert answer is not None, url
        seen[url] = answer.status
        title = page.title()  # a short name, not markup that leaked into <title>
        assert title.endswith(" · tenantry console"), (url, title)
        assert len(title) < 80, (url, title)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= viewport["width"], f"{url} is {width} px wide at {viewport['width']}"
        queue += [link for link in _links(page, console.base) if link not in seen]
    dead = {url: code for url, code in seen.items() if code != 200}
    assert dead == {}, dead
    paths = {url.removeprefix(console.base).split("?")[0] for url in seen}
    for expected in (
        "/console/fleet",
        "/console/fleet/preview",
        "/console/backups",
        "/console/backups/db/master",
        "/console/backups/db/billing",
        "/console/backups/db/store:alpha",
        "/console/billing",
        "/console/health",
        "/console/stores/alpha",
    ):
        assert expected in paths, (expected, sorted(paths))

    for path, name in (
        ("/console/fleet", "fleet"),
        ("/console/fleet/preview", "fleet-preview"),
        ("/console/backups", "backups"),
        ("/console/backups/db/store:alpha", "backup-artifacts"),
        ("/console/billing", "billing"),
    ):
        page.goto(console.base + path)
        screenshot(page, f"{name}-{label}")


def test_the_new_pages_show_the_fleet_the_protection_and_billing(
    start_console: Callable[..., Console], pages: Pages
) -> None:
    console = start_console()
    _seed(console)
    page = pages.open()
    sign_in(page, console, console.operator)

    page.goto(console.base + "/console/fleet")
    caption = page.locator("figure.counts figcaption").inner_text()
    # One provisioned tenant, at head, the head named in words beside its count.
    assert caption.startswith("Tenants per revision: ")
    assert caption.endswith(" 1 (head).")
    assert "No tenant's latest migration failed." in page.content()

    page.goto(console.base + "/console/backups")
    # Each database's state is named in words beside its colour (the server's scheduler
    # may have backed master up already: whichever state it is in, it says so).
    words = {"green": "ok (green)", "amber": "attention (amber)", "red": "unprotected (red)"}
    for scope in ("master", "billing", "store:alpha"):
        state = page.locator(f'tr[data-scope="{scope}"] [data-state]')
        assert state.inner_text() == words[state.get_attribute("data-state") or ""], scope
    assert "no database (pending)" in page.locator('tr[data-scope="store:beta"]').inner_text()

    page.goto(console.base + "/console/health")
    # Alert rules now: a threshold rule is evaluated on this moment's numbers; a rate rule
    # says it needs Prometheus. One tenant, at head: nothing lags.
    lagging = page.locator('tr[data-alert="TenantryFleetTenantsLagging"] [data-state]')
    assert lagging.inner_text() == "clear"
    latency = page.locator('tr[data-alert="TenantryQueryLatency"]').first
    assert "not evaluated" in latency.inner_text()
    assert page.locator("table.alerts tbody tr").count() >= 18

    page.goto(console.base + "/console/billing")
    assert page.locator("table.apps").inner_text().count("acme") == 1
    rate = page.locator('tr[data-rate="acme/stripe"]').inner_text()
    assert rate.split("\t")[2:] == ["1", "0", "0.0 %"], rate
    event = page.locator("tr[data-event]")
    assert "ignored" in event.inner_text()
    assert "no customer" in event.inner_text()
    secrets = page.locator("table.secrets").inner_text()
    assert "stripe" in secrets
    assert "in use" in secrets
    assert "whsec_" not in page.content()  # the secret, and its tail, are never shown


def test_a_viewer_is_refused_every_action_of_the_new_pages(
    start_console: Callable[..., Console], pages: Pages
) -> None:
    console = start_console()
    _seed(console)
    page = pages.open()
    sign_in(page, console, console.viewer)
    page.goto(console.base + "/console/fleet")
    assert page.get_by_role("button", name="Verify every tenant database").is_disabled()
    page.goto(console.base + "/console/fleet/preview")
    assert page.get_by_role("button", name="Migrate the fleet to").is_disabled()
    page.goto(console.base + "/console/backups/db/store:alpha")
    assert page.get_by_role("button", name="Back up store:alpha now").is_disabled()
    page.goto(console.base + "/console/billing?app=acme")
    assert page.get_by_role("button", name="Replay").is_disabled()
    event_id = page.locator("tr[data-event] form").get_attribute("action")
    assert event_id is not None

    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "tenantry_csrf")
    for path, form in (
        ("/console/fleet/migrate", {"target": ""}),
        ("/console/fleet/verify", {}),
        ("/console/backups/db/store:alpha/run", {}),
        (event_id, {"app": "acme"}),
    ):
        refused = page.request.post(
            console.base + path, form={"csrf_token": csrf, **form}, max_redirects=0
        )
        assert refused.status == 403, (path, refused.status)
        assert "is read-only (viewer) and cannot" in refused.text(), path
    with console.api() as api:
        backups = api.get("/backups", params={"db": "store:alpha"}).json()
        assert len(backups) == 1  # the seeded one only
        events = api.get("/billing/events", headers={"X-App-Id": "acme"}).json()
        assert [e["status"] for e in events] == ["ignored"]
        assert api.get("/operations", params={"kind": "fleet_run"}).json()["items"] == []
