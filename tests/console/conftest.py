"""Fixtures of the console's tests: a real `tenantry up` (a subprocess on a free port, its own
data dir, an operator and a viewer added with `tenantry users add`), and Chromium driven by
Playwright (Debian's /usr/bin/chromium; skipped locally without it, a failure in CI).

Every page a test opens collects the browser's console errors and uncaught exceptions; the
test fails if there was any. Screenshots go to ``test-output/console/`` (gitignored).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from tenantry.cli.main import app
from tenantry.runtime import Platform
from tenantry.services import users as accounts
from tenantry.settings import Settings, load_settings
from tests.conftest import BROWSER_OPEN, IN_CI
from tests.helpers import free_port, stop_process, wait_until_healthy
from tests.platform_fixtures import ENV_VARS, install
from tests.scratch_cleanup import drop_scratch_databases

CHROMIUM = Path(os.environ.get("TENANTRY_TEST_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "console"
#: A provisioning job pauses this long before building tables: long enough to reload the page
#: while it runs, and to cancel one.
#: The environment variables that are tenantry's settings.
SETTINGS = ("TENANTRY_", "DATABASE_URL")
PROVISION_PAUSE = "provision.migrate=sleep:2"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


@dataclass
class User:
    """A platform user the test signs in as."""

    email: str
    password: str
    role: str


@dataclass
class Console:
    """A running `tenantry up`: where it answers, its admin key and its users."""

    base: str
    admin_key: str
    operator: User
    viewer: User
    log: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes]

    def api(self) -> httpx.Client:
        """An HTTP client of the API with the admin key."""
        return httpx.Client(
            base_url=self.base, headers={"Authorization": f"Bearer {self.admin_key}"}, timeout=30
        )

    def cli(self, *args: str) -> str:
        """``tenantry ARGS`` on this installation, asserted to succeed; its output. Run in
        this process by Typer's runner: the command's own code, without a new interpreter
        (about 1.7 s of CPU each)."""
        return run_cli(self.env, *args)


def _settings_env(env: dict[str, str]) -> dict[str, str | None]:
    """``env``'s tenantry settings, every other tenantry setting of this process unset."""
    ours = {k: v for k, v in env.items() if k.startswith(SETTINGS)}
    return {**{k: None for k in os.environ if k.startswith(SETTINGS)}, **ours}


def _plugin_paths(env: dict[str, str]) -> list[str]:
    """Where ``env``'s tenant schema plug-in is imported from (its PYTHONPATH)."""
    return [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path]


def run_cli(env: dict[str, str], *args: str) -> str:
    """``tenantry ARGS`` with ``env``'s settings, in this process; asserted to exit 0."""
    with pytest.MonkeyPatch.context() as patch:
        for path in _plugin_paths(env):
            patch.syspath_prepend(path)
        done = CliRunner().invoke(app, list(args), env=_settings_env(env), catch_exceptions=False)
    assert done.exit_code == 0, (args, done.output)
    return done.output


def _env(data_dir: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    env["TENANTRY_DATA_DIR"] = str(data_dir)
    env["TENANTRY_FAILPOINTS"] = PROVISION_PAUSE
    env.update(extra)
    return env


@contextmanager
def _settings_of(env: dict[str, str]) -> Iterator[Settings]:
    """The settings of the installation of ``env``, with its environment and tenant schema
    plug-in in this process for the block."""
    with pytest.MonkeyPatch.context() as patch:
        for var, value in _settings_env(env).items():
            if value is None:
                patch.delenv(var, raising=False)
            else:
                patch.setenv(var, value)
        for path in _plugin_paths(env):  # a tenant schema plug-in of the test's own
            patch.syspath_prepend(path)
        yield load_settings()


def _install_with_users(env: dict[str, str], users: tuple[User, ...]) -> None:
    """What `tenantry init` and `tenantry users add` do before `up`, in this process: master
    and billing copied from the session's migrated templates, the users added through the
    users service (the CLI commands themselves are tested in tests/cli; a new interpreter
    for each cost about 1.7 s of CPU)."""
    with _settings_of(env) as settings:
        install(settings)
        platform = Platform.open(settings)
        try:
            with platform.writer_sessions.begin() as session:
                for user in users:
                    accounts.add_user(
                        session,
                        email=user.email,
                        password=user.password,
                        role=accounts.role_of(user.role),
                        name=None,
                        actor="cli:test",
                    )
        finally:
            platform.close()


@pytest.fixture
def start_console(tmp_path: Path) -> Iterator[Callable[..., Console]]:
    """Start `tenantry up` (with ``env`` added to its environment and ``servers`` registered,
    name -> admin URL); stopped after the test by its own pid."""
    started: list[Console] = []

    def start(env: dict[str, str] | None = None, servers: dict[str, str] | None = None) -> Console:
        data = tmp_path / f"data-{len(started)}"
        full = _env(data, env or {})
        users = (
            User(
                f"op-{uuid.uuid4().hex[:6]}@example.com",
                "operator-pass-" + uuid.uuid4().hex,
                "operator",
            ),
            User(
                f"view-{uuid.uuid4().hex[:6]}@example.com",
                "viewer-pass-" + uuid.uuid4().hex,
                "viewer",
            ),
        )
        _install_with_users(full, users)
        # Registered before the server starts: its worker's start-up writes master too.
        for name, url in (servers or {}).items():
            run_cli(full, "servers", "add", name, "--url", url)
        port = free_port()
        log = tmp_path / f"up-{len(started)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tenantry", "up", "--port", str(port), "--no-access-log"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=full,
                start_new_session=True,
            )
        base = f"http://127.0.0.1:{port}"
        console = Console(base, "", users[0], users[1], log, full, proc)
        started.append(console)
        wait_until_healthy(base, proc, log, seconds=60)
        found = re.search(r"admin API key \(shown once\): (\S+)", log.read_text())
        assert found, log.read_text()
        console.admin_key = found.group(1)
        return console

    yield start
    for console in started:
        stop_process(console.proc)
        # Its worker's scheduler may have been restore-testing a backup when it was stopped.
        with _settings_of(console.env) as settings:
            drop_scratch_databases(settings)


@pytest.fixture(scope="module")
def browser(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Chromium (Debian's), driven by Playwright; one per test module.

    Not one per session: Playwright's sync API keeps its asyncio loop marked running in this
    thread for as long as it is open, so every later test of the xdist worker that called
    ``asyncio.run`` failed ("cannot be called from a running event loop") whenever a console
    module had run before it there. A launch costs about 0.8 s of CPU.
    """
    if not CHROMIUM.exists():
        if IN_CI:
            pytest.fail(f"{CHROMIUM} is needed in CI (apt-get install chromium; see .ci/run)")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    request.config.stash[BROWSER_OPEN] = request.path
    try:
        with sync_playwright() as playwright:
            launched = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=["--no-sandbox"]
            )
            yield launched
            launched.close()
    finally:
        request.config.stash[BROWSER_OPEN] = None


@dataclass
class Pages:
    """Opens pages (a viewport each) and keeps every console error and uncaught exception."""

    browser: Any
    errors: list[str] = field(default_factory=list)
    contexts: list[Any] = field(default_factory=list)

    def open(self, viewport: dict[str, int] = DESKTOP) -> Any:
        context = self.browser.new_context(viewport=viewport)
        self.contexts.append(context)
        page = context.new_page()
        page.on(
            "console",
            lambda msg: (
                self.errors.append(f"{page.url}: {msg.text}") if msg.type == "error" else None
            ),
        )
        page.on("pageerror", lambda exc: self.errors.append(f"{page.url}: {exc}"))
        page.set_default_timeout(30_000)
        return page


@pytest.fixture
def pages(browser: Any) -> Iterator[Pages]:
    """Pages of a test; it fails if any logged a console error or threw."""
    opened = Pages(browser)
    yield opened
    for context in opened.contexts:
        context.close()
    assert opened.errors == [], "the browser logged errors:\n" + "\n".join(opened.errors)


def sign_in(page: Any, console: Console, user: User) -> None:
    """Sign ``user`` in through the login form."""
    page.goto(f"{console.base}/console/login")
    page.get_by_label("Email").fill(user.email)
    page.get_by_label("Password").fill(user.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{console.base}/console/stores")


def screenshot(page: Any, name: str) -> Path:
    """Save a full-page screenshot under test-output/console/.

    The picture is for a person to look at, not an assertion, but it must still be taken. On a
    loaded 2-core CI machine Chromium's capture sometimes stalls after the page has rendered
    (Playwright logs "fonts loaded" and then nothing for 30 s: the compositor never hands over
    the frame), so a stalled capture is tried again once on a fresh frame before it fails."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    options = {"path": str(path), "full_page": True, "animations": "disabled", "caret": "hide"}
    try:
        page.screenshot(timeout=20_000, **options)
    except PlaywrightTimeout:
        page.evaluate("() => new Promise(requestAnimationFrame)")
        page.screenshot(timeout=40_000, **options)
    return path
