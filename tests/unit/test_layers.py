"""The adapters (API, CLI, jobs) never import each other, services and storage never import the
layers above them, only ``jobs`` imports Huey, the benchmarks call the library rather than the
CLI, and services open no transaction: read from the source, every import counted (also those
inside functions, which lazy loading hides from a plain ``import``)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tenantry.jobs.queue import Queue
from tenantry.operations.dispatch import Dispatcher, InProcessDispatcher
from tenantry.runtime import open_dispatcher
from tenantry.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "tenantry"

#: (the files, the modules they may not import): a module is matched with its submodules.
RULES: list[tuple[str, tuple[str, ...]]] = [
    ("tenantry/api/", ("tenantry.jobs", "tenantry.cli")),
    ("tenantry/cli/", ("tenantry.api", "tenantry.jobs")),
    ("tenantry/jobs/", ("tenantry.api", "tenantry.cli")),
    # The console is part of the HTTP adapter: it uses the API's dependencies, never the others.
    ("tenantry/console/", ("tenantry.jobs", "tenantry.cli")),
    ("bench/", ("tenantry.cli",)),
    # Services and storage sit below the operations: they never reach up.
    (
        "tenantry/services/",
        ("tenantry.operations", "tenantry.api", "tenantry.cli", "tenantry.jobs"),
    ),
    (
        "tenantry/db/",
        (
            "tenantry.operations",
            "tenantry.services",
            "tenantry.api",
            "tenantry.cli",
            "tenantry.jobs",
        ),
    ),
    ("tenantry/backup/", ("tenantry.operations", "tenantry.api", "tenantry.cli", "tenantry.jobs")),
]
#: Only the Huey adapter imports Huey.
HUEY_HOME = "tenantry/jobs/"


def imported_modules(source: str, package: str) -> list[tuple[int, str]]:
    """Every module ``source`` imports, with its line; relative imports are resolved against
    ``package``, the one the module is in."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            # `from tenantry import jobs` imports tenantry.jobs: name each imported name too.
            found.append((node.lineno, base))
            found.extend((node.lineno, f"{base}.{alias.name}") for alias in node.names)
    return found


def _within(name: str, module: str) -> bool:
    return name == module or name.startswith(module + ".")


def violations(relative: str, source: str) -> list[str]:
    """What file ``relative`` (a path from the repository's root) imports against the rules."""
    package = relative.rsplit("/", 1)[0].replace("/", ".")
    found: dict[tuple[int, str], str] = {}  # one report per line and rule, the shortest name
    for line, name in imported_modules(source, package):
        for prefix, forbidden in RULES:
            if relative.startswith(prefix):
                for banned in forbidden:
                    if _within(name, banned):
                        found.setdefault((line, banned), f"{relative}:{line} imports {name}")
        if _within(name, "huey") and not relative.startswith(HUEY_HOME):
            found.setdefault(
                (line, "huey"), f"{relative}:{line} imports {name} (only tenantry/jobs/ may)"
            )
    return list(found.values())


def _sources() -> list[Path]:
    return sorted([*PACKAGE.rglob("*.py"), *(ROOT / "bench").rglob("*.py")])


def test_the_adapters_import_neither_each_other_nor_huey_outside_jobs() -> None:
    found = [
        problem
        for path in _sources()
        for problem in violations(path.relative_to(ROOT).as_posix(), path.read_text())
    ]
    assert found == [], "layer rules broken:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("relative", "source", "expected"),
    [
        (
            "tenantry/api/deps.py",
            "from tenantry.jobs.queue import Queue\n",
            "tenantry/api/deps.py:1 imports tenantry.jobs.queue",
        ),
        (
            "tenantry/cli/serve.py",
            "def up() -> None:\n    from tenantry.api.app import create_app\n",
            "tenantry/cli/serve.py:2 imports tenantry.api.app",
        ),
        (
            "tenantry/cli/fleet.py",
            "from ..jobs import queue\n",
            "tenantry/cli/fleet.py:1 imports tenantry.jobs",
        ),
        (
            "tenantry/jobs/queue.py",
            "import tenantry.cli.output\n",
            "tenantry/jobs/queue.py:1 imports tenantry.cli.output",
        ),
        (
            "tenantry/operations/dispatch.py",
            "from huey import SqliteHuey\n",
            "tenantry/operations/dispatch.py:1 imports huey (only tenantry/jobs/ may)",
        ),
        (
            "bench/provision.py",
            "from tenantry.cli.init_cmd import run_init\n",
            "bench/provision.py:1 imports tenantry.cli.init_cmd",
        ),
    ],
)
def test_each_rule_names_the_file_and_the_import(relative: str, source: str, expected: str) -> None:
    assert expected in violations(relative, source)


def test_what_the_rules_allow_passes() -> None:
    assert (
        violations("tenantry/cli/provision.py", "from tenantry.cli.output import console\n") == []
    )
    assert violations("tenantry/jobs/queue.py", "from huey import Huey\n") == []
    assert violations("tenantry/api/app.py", "from tenantry.operations import dispatch\n") == []
    # A name that merely starts like a forbidden package is not that package.
    assert violations("tenantry/api/app.py", "import tenantry.jobsite\n") == []


def test_the_platform_hands_out_the_job_queue_as_its_dispatcher(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, queue_url=None)
    dispatcher: Dispatcher = open_dispatcher(settings)
    try:
        assert isinstance(dispatcher, Queue)  # loaded by its import path, not imported
        assert dispatcher.where == "the embedded queue in the data dir"
        assert (tmp_path / "queue.db").is_file()
    finally:
        dispatcher.close()
    # Both kinds fit the protocol (mypy checks these assignments).
    queue: Dispatcher = Queue(settings)
    queue.close()
    inline: Dispatcher = InProcessDispatcher(settings)
    assert inline.where == "this process"
    inline.close()


# --------------------------------------------------------------------------- transactions

SERVICES = "tenantry/services/"
#: Calls that open, nest or end a transaction: the operation, route or command that called the
#: service owns them, never the service.
TRANSACTION_CALLS = frozenset({"commit", "begin", "begin_nested"})
#: Services still being cleaned on other branches; emptied when those are merged (no file may
#: be added to it).
PENDING: set[str] = set()


def transaction_calls(relative: str, source: str) -> list[str]:
    """Each call in ``source`` of a method named commit, begin or begin_nested, with its line."""
    return [
        f"{relative}:{node.lineno} calls .{node.func.attr}()"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in TRANSACTION_CALLS
    ]


def test_services_neither_commit_nor_open_transactions() -> None:
    found = [
        problem
        for path in sorted((PACKAGE / "services").rglob("*.py"))
        if (relative := path.relative_to(ROOT).as_posix()) not in PENDING
        for problem in transaction_calls(relative, path.read_text())
    ]
    assert found == [], "services own no transaction (their callers do):\n" + "\n".join(found)


def test_pending_lists_only_files_that_exist() -> None:
    # A file cleaned (or moved) leaves the list; a stale entry would hide a new one's name.
    assert all((ROOT / relative).is_file() for relative in PENDING)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("session.commit()\n", ["s.py:1 calls .commit()"]),
        ("with sessions.begin() as s:\n    pass\n", ["s.py:1 calls .begin()"]),
        ("x = 1\nwith session.begin_nested():\n    pass\n", ["s.py:2 calls .begin_nested()"]),
        ("engine.connect().begin()\n", ["s.py:1 calls .begin()"]),
        ("session.flush()\nbegin = 1\nsession.execute(q)\n", []),
    ],
)
def test_transaction_calls_are_found_by_name(source: str, expected: list[str]) -> None:
    assert transaction_calls("s.py", source) == expected
