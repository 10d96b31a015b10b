"""A test run leaves nothing behind on the test servers: the PostgreSQL databases and roles and
the MariaDB databases and users are listed when the run starts and when it ends, and a run
that leaves new ones fails, naming them.

Checked once per run, in the process that runs pytest (with pytest-xdist, the controller,
after its workers have stopped: :func:`register` does nothing in a worker). What existed when
the run started is never blamed on it. What is new at the end counts only if it is still there
:data:`SETTLE_S` seconds later (it is listed every second meanwhile, and what goes away is
let go): a worker's exit handlers (:mod:`tests.templates`) drop theirs a moment after the run,
and another run against the same servers at the same time makes and drops its own. Another run
that leaves something, or keeps it longer, would be blamed here too: set
``TENANTRY_TEST_LEAK_CHECK=0`` to skip the check for a run that shares the servers.

Kept on purpose, so not a leftover: the builder's template of tenantry's own tenant schema at
its head (``tenantry_tpl_store_<head>``), a cache every provisioning on the server shares. Not
this run's: the benchmarks' objects (:data:`BENCH_PREFIXES`), which may run meanwhile, and the
templates of another run's test processes still running.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Generator, Iterable

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError

from tenantry.db.engines import make_engine
from tenantry.db.urls import parse_url
from tenantry.errors import TenantryError

#: ``0`` turns the check off for a run.
SWITCH = "TENANTRY_TEST_LEAK_CHECK"
#: How long what is new since the start must stay to count as left behind.
SETTLE_S = 30.0
_POLL_S = 1.0
#: The benchmarks' own names (bench/ runs against the same servers, and checks its own
#: leftovers): never this run's.
BENCH_PREFIXES = ("tenantry_bench_", "tsp_tenantry_bench_", "bench_", "tt_bench_", "ts_bench_")


def server_objects(backend: str, url: URL) -> set[str]:
    """The databases and roles (PostgreSQL) or databases and users (MariaDB) on the server of
    admin URL ``url``, each as a line naming what it is."""
    if backend == "postgresql":
        engine = make_engine(url.set(database="postgres"), pooled=False)
    else:
        engine = make_engine(url, pooled=False)
    try:
        with engine.connect() as conn:
            if backend == "postgresql":
                databases = conn.scalars(text("SELECT datname FROM pg_database"))
                found = {f"PostgreSQL database {n}" for n in databases}
                roles = conn.scalars(text("SELECT rolname FROM pg_roles"))
                return found | {f"PostgreSQL role {n}" for n in roles}
            databases = conn.scalars(text("SELECT schema_name FROM information_schema.schemata"))
            found = {f"MariaDB database {n}" for n in databases}
            users = conn.execute(text("SELECT user, host FROM mysql.user"))
            return found | {f"MariaDB user '{user}'@'{host}'" for user, host in users}
    finally:
        engine.dispose()


def kept_on_purpose() -> set[str]:
    """The objects a run may make and keep: the template of tenantry's own tenant schema at
    its head, which every provisioning on the server clones (made once per revision)."""
    from tenantry.db.builder import template_name
    from tenantry.db.schemas import tenant_schema
    from tenantry.settings import Settings

    default = Settings.model_fields["tenant_schema"].default
    return {f"PostgreSQL database {template_name(tenant_schema(default))}"}


class LeakCheck:
    """The plug-in: what was on the servers at the start, compared at the end."""

    def __init__(self, servers: dict[str, str]) -> None:
        self.servers = servers
        #: Per backend whose server answered at the start, what was on it.
        self.before: dict[str, set[str]] = {}
        #: Per backend not listed (its server did not answer), why.
        self.unchecked: dict[str, str] = {}

    def _snapshot(self, backends: Iterable[str]) -> dict[str, set[str]]:
        found = {}
        for backend in backends:
            try:
                found[backend] = server_objects(backend, parse_url(self.servers[backend]))
            except (SQLAlchemyError, TenantryError) as exc:
                # Unreachable (a run without that server): nothing of it is checked.
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                self.unchecked[backend] = f"{backend} not listed ({first})"
        return found

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """List what is on the servers before any test runs."""
        self.before = self._snapshot(self.servers)

    @pytest.hookimpl(wrapper=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> Generator[None, None, None]:
        """After every other finishing step (pytest-xdist stops its workers in one): fail the
        run if it left something new on a server."""
        result = yield
        if session.exitstatus != pytest.ExitCode.INTERRUPTED:
            # Interrupted: teardowns did not run, so leftovers say nothing about them.
            self._check(session)
        return result

    def _check(self, session: pytest.Session) -> None:
        _drop_own_templates()  # without pytest-xdist they would go only at exit
        left = self._left()
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None and self.unchecked:
            why = "; ".join(self.unchecked.values())
            reporter.write_line(f"leak check incomplete: {why}", yellow=True)
        if not left:
            return
        if reporter is not None:
            reporter.write_sep("=", "objects left on the test servers by this run", red=True)
            for line in sorted(left):
                reporter.write_line(f"  {line}")
            reporter.write_line(
                f"They did not exist when this run started and were still there {SETTLE_S:g} s "
                "after its tests ended: a test or fixture made them and did not drop them. Make "
                "its cleanup drop them, then drop these by hand. (If another run used the same "
                f"servers at the same time, it may have left them: run alone, or with {SWITCH}=0 "
                "to skip this check.)",
                red=True,
            )
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _left(self) -> set[str]:
        """What is new since the start and stayed there for :data:`SETTLE_S` seconds (one
        that goes away meanwhile, even if made again, was someone's work in progress)."""
        deadline = time.monotonic() + SETTLE_S
        kept = kept_on_purpose()
        left: set[str] | None = None
        while True:
            now = self._snapshot(self.before)
            new = {
                line
                for backend, lines in now.items()
                for line in lines - self.before[backend]
                if line not in kept and not _not_ours(line)
            }
            left = new if left is None else left & new
            if not left or time.monotonic() >= deadline:
                return left
            time.sleep(_POLL_S)


def _not_ours(line: str) -> bool:
    """Whether the object ``line`` names (see :func:`server_objects`) is surely another's: a
    benchmark's, or the template of a test process still running (:mod:`tests.templates`
    puts its pid in the name; this run's processes have ended by now)."""
    name = line.split(" ", 2)[2].lstrip("'")
    if name.startswith(BENCH_PREFIXES):
        return True
    template = _TEMPLATE.fullmatch(name)
    return template is not None and _running(int(template.group(1)))


#: The name of a template of :mod:`tests.templates`: ``tt_tpl_<schema>_<owner>_<pid>_<hex>``.
_TEMPLATE = re.compile(r"tt_tpl_\w+_(\d+)_[0-9a-f]{6}")


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True


def _drop_own_templates() -> None:
    """This process's copies-at-head templates (:mod:`tests.templates`), which it otherwise
    drops at exit, after the check."""
    from tests.templates import drop_templates

    drop_templates()


def register(config: pytest.Config, servers: dict[str, str]) -> None:
    """Add the check to this run, in the process that runs pytest (not in a pytest-xdist
    worker), unless ``TENANTRY_TEST_LEAK_CHECK=0``."""
    if hasattr(config, "workerinput") or os.environ.get(SWITCH, "1") == "0":
        return
    config.pluginmanager.register(LeakCheck(servers), "tenantry-leak-check")
