"""Every console page in Chromium at phone (390 px) and desktop (1280 px) width: no console
error, no dead navigation link, no horizontal scrolling of the page itself, the security
headers, CSRF and sign-in refusals, and forms showing the API's own error messages."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from playwright.sync_api import Error as PlaywrightError

from tests.console.conftest import DESKTOP, PHONE, Console, Pages, screenshot, sign_in


def _seed(console: Console) -> None:
    with console.api() as api:
        for slug in ("alpha", "beta"):
            made = api.post("/stores", json={"slug": slug, "name": slug.title() + " shop"})
            assert made.status_code == 201, made.text
        job = api.post("/stores/alpha/provision", json={})
        assert job.status_code == 202, job.text


def row_slugs(html: str) -> list[str]:
    """The slugs of the stores table's rows, in the order shown."""
    return re.findall(r'<th scope="row"><a href="/console/stores/([^"]+)">', html)


def _nav_links(page: Any) -> list[str]:
    # A page following a running operation reloads itself when it ends (HX-Refresh): read
    # the links again from the reloaded page.
    for _ in range(3):
        try:
            hrefs = page.locator("header nav a, header a.brand, footer a").evaluate_all(
                "els => els.map(e => e.href)"
            )
            return sorted(set(hrefs))
        except PlaywrightError as exc:
            if "Execution context was destroyed" not in str(exc):
                raise
            page.wait_for_load_state("load")
    raise AssertionError("the page kept navigating while its links were read")


@pytest.mark.parametrize(("viewport", "label"), [(DESKTOP, "desktop"), (PHONE, "phone")])
def test_every_page_renders_without_errors_and_every_nav_link_answers(
    viewport: dict[str, int], label: str, start_console: Callable[..., Console], pages: Pages
) -> None:
    console = start_console()
    _seed(console)
    page = pages.open(viewport)
    sign_in(page, console, console.operator)
    visited: dict[str, int] = {}
    for path, name in (
        ("/console/stores", "stores"),
        ("/console/stores/alpha", "store-detail"),
        ("/console/stores/beta", "store-detail-pending"),
        ("/console/operations", "operations"),
        ("/console/health", "health"),
    ):
        answer = page.goto(console.base + path)
        assert answer is not None, path
        assert answer.status == 200, path  # loaded: goto waits for "load" (see the crawl)
        title = page.title()  # a short name, not markup that leaked into <title>
        assert title.endswith(" · tenantry console"), (path, title)
        assert len(title) < 80, (path, title)
        # The page fits the viewport: only tables scroll, inside their own box.
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= viewport["width"], f"{path} is {width} px wide at {viewport['width']}"
        screenshot(page, f"{name}-{label}")
        for link in _nav_links(page):
            if link not in visited:
                visited[link] = page.request.get(link).status
        if name == "store-detail":
            # The page follows alpha's provisioning and reloads itself when it ends; once
            # Chromium reported the next page.goto interrupted by that reload, as the two
            # crossed. The page being left stopping its following is its own test (below).
            page.locator("h1 .status", has_text="active").wait_for(timeout=60_000)
            page.wait_for_load_state("networkidle")
    assert visited
    assert all(code == 200 for code in visited.values()), visited
    assert any(link.endswith("/console/operations") for link in visited)
    assert any(link.endswith("/console/health") for link in visited)

    page.context.clear_cookies()
    login = page.goto(console.base + "/console/stores")
    assert login is not None
    assert page.url.startswith(console.base + "/console/login")
    screenshot(page, f"login-{label}")


def test_a_page_being_left_is_not_reloaded_when_its_operation_ends(
    start_console: Callable[..., Console], pages: Pages
) -> None:
    # A store's page follows its provisioning and reloads itself when it ends. Once the browser
    # has started leaving the page, that reload would cancel the navigation asked for (Chromium
    # reports the navigation as net::ERR_ABORTED): a page being left stops following.
    # Long enough for both pages to be open and following on a loaded machine.
    console = start_console({"TENANTRY_FAILPOINTS": "provision.migrate=sleep:10"})
    with console.api() as api:
        for slug in ("stays", "left"):
            assert api.post("/stores", json={"slug": slug, "name": slug}).status_code == 201
            assert api.post(f"/stores/{slug}/provision", json={}).status_code == 202
    opened = {}
    for slug in ("stays", "left"):
        page = pages.open()
        sign_in(page, console, console.operator)
        page.goto(f"{console.base}/console/stores/{slug}")
        page.evaluate("window.marker = 'first load'")
        opened[slug] = page
    polls: list[str] = []
    opened["left"].on(
        "request", lambda request: polls.append(request.url) if "/progress" in request.url else None
    )
    opened["left"].wait_for_timeout(1500)
    assert polls, "the page of a running operation polls its progress"
    opened["left"].evaluate("window.dispatchEvent(new Event('beforeunload'))")
    opened["left"].wait_for_timeout(200)  # a poll sent just before may still be reported
    sent = len(polls)

    # The page that stays reloads when its operation ends; the page being left does not, and
    # it sends no more polls.
    opened["stays"].wait_for_function("() => window.marker === undefined", timeout=60_000)
    with console.api() as api:
        for _ in range(120):
            ops = api.get("/operations", params={"store": "left"}).json()["items"]
            if ops and ops[0]["status"] != "running" and ops[0]["status"] != "queued":
                break
            opened["left"].wait_for_timeout(500)
        assert ops[0]["status"] == "succeeded", ops
    opened["left"].wait_for_timeout(2500)
    assert opened["left"].evaluate("window.marker") == "first load"
    assert len(polls) == sent, polls[sent:]


def test_the_keyboard_reaches_the_navigation_and_the_forms(
    start_console: Callable[..., Console], pages: Pages
) -> None:
    console = start_console()
    page = pages.open()
    sign_in(page, console, console.operator)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    reached = []
    for _ in range(8):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement.textContent.trim()"))
    assert "Stores" in reached
    assert "Operations" in reached
    assert "Sign out" in reached


def test_forms_show_the_apis_messages_and_nothing_is_half_written(
    start_console: Callable[..., Console], pages: Pages
) -> None:
    console = start_console()
    page = pages.open()
    sign_in(page, console, console.operator)
    with console.api() as api:
        assert api.post("/stores", json={"slug": "taken", "name": "x"}).status_code == 201
        wanted = api.post("/stores", json={"slug": "taken", "name": "y"}).json()["error"]
    page.get_by_label("Slug", exact=True).fill("taken")
    page.get_by_label("Name", exact=True).fill("Second")
    page.get_by_role("button", name="Create and provision").click()
    shown = page.locator("#error-create")
    assert wanted["message"] in shown.inner_text()
    assert shown.get_attribute("data-status") == "409"
    # The form keeps what was typed.
    assert page.get_by_label("Name", exact=True).input_value() == "Second"
    # A slug the service refuses: its own words.
    page.get_by_label("Slug", exact=True).fill("Bad Slug!")
    page.get_by_role("button", name="Create and provision").click()
    assert "invalid store slug 'Bad Slug!'" in page.locator("#error-create").inner_text()

    # Connect-existing with a URL that cannot be reached: the store stays pending, the error
    # is shown, and the URL's password is nowhere on the page.
    secret = "s3cr3t-pw-never-shown"
    page.get_by_label("Slug", exact=True).fill("elsewhere")
    page.get_by_label("Name", exact=True).fill("Elsewhere")
    page.get_by_label("Connect an existing database").check()
    page.get_by_label("Database URL").fill(f"postgresql://u:{secret}@127.0.0.1:1/nope")
    page.get_by_role("button", name="Create and provision").click()
    page.wait_for_url(console.base + "/console/stores/elsewhere")
    page.locator(".progress[data-status=failed]").wait_for(timeout=60_000)
    page.reload()
    failure = page.locator("#provision-failure").inner_text()
    assert "cannot connect to postgresql+psycopg://u:***@127.0.0.1:1/nope" in failure
    assert secret not in page.content()
    with console.api() as api:
        listed = api.get("/stores").json()["items"]
    assert sorted(s["slug"] for s in listed) == ["elsewhere", "taken"]

    # A wrong password: the API's words, no session.
    page.context.clear_cookies()
    page.goto(console.base + "/console/login")
    page.get_by_label("Email").fill(console.operator.email)
    page.get_by_label("Password").fill("wrong-password")
    page.get_by_role("button", name="Sign in").click()
    assert "wrong email or password." in page.locator(".error").inner_text()
    assert not [c for c in page.context.cookies() if c["name"] == "tenantry_session"]


def test_headers_csrf_and_sessions_are_enforced(start_console: Callable[..., Console]) -> None:
    console = start_console()
    with httpx.Client(base_url=console.base, timeout=30) as http:
        home = http.get("/")
        assert home.status_code == 303
        assert home.headers["location"] == "/console/stores"
        for path in ("/", "/console/login", "/console/stores"):
            answer = http.get(path)
            assert "default-src 'self'" in answer.headers["content-security-policy"]
            assert answer.headers["x-frame-options"] == "DENY"
            assert answer.headers["referrer-policy"] == "same-origin"
        # Not signed in: sent to the sign-in page (htmx: told to go there).
        gone = http.get("/console/operations")
        assert gone.status_code == 303
        assert gone.headers["location"].startswith("/console/login")
        assert (
            http.get("/console/operations", headers={"HX-Request": "true"})
            .headers["HX-Redirect"]
            .startswith("/console/login")
        )
        # The API keeps its JSON contract and its docs.
        assert http.get("/stores").json()["error"]["type"] == "Unauthorized"
        assert http.get("/health").json()["status"] == "ok"
        assert http.get("/docs").status_code == 200

        # A login form not sent from the page (no login CSRF cookie) is refused.
        forged = http.post(
            "/console/login",
            data={"email": console.operator.email, "password": console.operator.password},
        )
        assert "stale or was not sent from this page" in forged.text
        assert "tenantry_session" not in http.cookies

        form = http.get("/console/login")
        token = form.text.split('name="csrf_token" value="')[1].split('"')[0]
        signed = http.post(
            "/console/login",
            data={
                "email": console.operator.email,
                "password": console.operator.password,
                "csrf_token": token,
            },
        )
        assert signed.status_code == 303, signed.text
        session_cookie = next(c for c in http.cookies.jar if c.name == "tenantry_session")
        assert session_cookie.has_nonstandard_attr("HttpOnly")
        # Signed in, but a POST without the session's CSRF token is refused.
        refused = http.post("/console/stores", data={"slug": "nocsrf", "name": "x"})
        assert refused.status_code == 403
        assert "CSRF token" in refused.text
        assert "<!doctype html>" in refused.text.lower()
        assert http.get("/console/stores/nocsrf").status_code == 404
        # htmx gets an error as a fragment it swaps in (2xx), the API's status named in it.
        csrf = next(c.value for c in http.cookies.jar if c.name == "tenantry_csrf")
        gone_op = http.post(
            "/console/operations/abcdef12/cancel",
            data={"csrf_token": csrf},
            headers={"HX-Request": "true"},
        )
        assert gone_op.status_code == 200
        assert 'data-status="404"' in gone_op.text
        assert "no operation" in gone_op.text
        assert "<html" not in gone_op.text
        # 55 stores: 50 on the first page, a link to the second, which holds the other 5.
        with console.api() as api:
            for i in range(55):
                assert api.post("/stores", json={"slug": f"p-{i:02d}", "name": "P"}).is_success
        first = http.get("/console/stores")
        assert "55 stores." in first.text
        assert first.text.count('<tr>\n      <th scope="row">') == 50
        assert 'href="/console/stores?q=&amp;status=&amp;page=2" rel="next"' in first.text
        second = http.get("/console/stores", params={"page": 2})
        # The rows' own links, not the page's text: the operator's random e-mail
        # in the header may contain "p-00".
        assert row_slugs(second.text) == [f"p-{i}" for i in range(50, 55)]
        assert row_slugs(first.text) == [f"p-{i:02d}" for i in range(50)]
        found = http.get("/console/stores", params={"q": "P-1"})
        assert "10 stores match." in found.text
        missing = http.get("/console/stores/nowhere")
        assert missing.status_code == 404
        assert "no store &#39;nowhere&#39;" in missing.text
