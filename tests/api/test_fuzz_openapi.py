"""Schemathesis over the whole API, in-process, with every check (the CLI's ``--checks all``).

Run once with an admin key over every operation, and once with a store key on a provisioned
SQLite store over the operations a store key may call (so the store-data routes do real work;
everything else only refuses a store key, which the admin run and the key tests cover): every
phase (examples, coverage, fuzzing, stateful where the
document has links), positive and negative data, a bounded number of examples per operation.
Any failure of any check, or any error of the engine, fails the test with schemathesis's
report of it (the operation, the check, a curl to reproduce it).

Each run is split into groups of operations by their OpenAPI tag (``GROUPS``), one test each, so
that xdist spreads them over its workers instead of one worker fuzzing for minutes; the last
group takes every tag the others do not name, so every operation is fuzzed exactly once per key
whatever tags are added later (``test_the_groups_split_every_operation_once``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from schemathesis.engine import events, from_schema
from schemathesis.python.asgi import shutdown_lifespans

from tenantry.api.app import create_app
from tenantry.operations.dispatch import InProcessDispatcher
from tenantry.settings import Settings
from tests.api.conftest import Api

#: Examples per operation and phase: enough to reach every check, small enough that the runs
#: together stay near four minutes of one core (spread over xdist's workers by ``GROUPS``).
MAX_EXAMPLES = 25
PHASES = ["examples", "coverage", "fuzzing", "stateful"]

#: The operations a store key may call: its store and that store's data, its provisioning job.
STORE_KEY_PATHS = r"^/(stores/\{store_ref\}|provision/|operations|health)"

#: Groups of operations by OpenAPI tag, each fuzzed by a test of its own with every phase,
#: about a minute of work each on two loaded cores (a resource's operations stay together, so
#: the stateful phase links them as before). ``REST`` holds every tag no other group names:
#: most store tables generated from their declarations (tenantry/api/resources/store.py), and
#: whatever tag comes next.
REST = "more store tables"
GROUPS: dict[str, frozenset[str]] = {
    "billing": frozenset({"billing", "webhooks"}),
    "servers and backups": frozenset({"database servers", "backups", "imports"}),
    "access": frozenset({"authentication", "api keys", "audit", "monitoring"}),
    "stores": frozenset({"stores", "store domains", "store data", "operations", "health"}),
    "store tables": frozenset({"discounts", "prices", "categories", "cms-pages"}),
}
#: Groups with no operation a store key may call (their refusals are the admin run's and the
#: key tests' business).
ADMIN_ONLY = frozenset({"billing", "servers and backups", "access"})
RUNS = [("admin", group) for group in [*GROUPS, REST]] + [
    ("store", group) for group in [*GROUPS, REST] if group not in ADMIN_ONLY
]


@dataclass
class Target:
    """The app under test, with the keys to call it as."""

    app: FastAPI
    admin: dict[str, str]
    store: dict[str, str]


@pytest.fixture
def target(api: Api, settings: Settings) -> Iterator[Target]:
    """A second app on the installation ``api`` set up (schemathesis runs its lifespan)."""
    api.provisioned_store("fuzz-shop")
    store_key = api.store_key("fuzz-shop")
    product = api.client.post(
        "/stores/fuzz-shop/products",
        json={"sku": "FZ-1", "name": "Fuzz", "price_minor": 100},
        headers=store_key,
    )
    assert product.status_code == 201, product.text
    dispatcher = InProcessDispatcher(settings)
    app = create_app(settings, dispatcher=dispatcher)
    try:
        yield Target(app, api.admin, store_key)
    finally:
        shutdown_lifespans()
        dispatcher.close()


#: Rules the OpenAPI document cannot state, one reason per operation.
CONFIG = Path(__file__).with_name("schemathesis.toml")


def _group_of(tags: list[str] | None) -> str:
    """The group an operation with these OpenAPI tags is fuzzed in (by its first tag)."""
    first = tags[0] if tags else None
    return next((name for name, named in GROUPS.items() if first in named), REST)


def _selected(loaded: Any, paths: str | None, group: str) -> Any:
    """The API's schema cut down to ``group``'s operations (and, given, those under ``paths``)."""
    # Excluded, not included: the configuration file's own operation filter already
    # includes every operation, and includes add up.
    return loaded.exclude(
        lambda ctx: (
            _group_of(ctx.operation.tags) != group
            or (paths is not None and not _path_in(ctx, paths))
        )
    )


def _operations(schema: Any) -> list[str]:
    return sorted(result.ok().label for result in schema.get_all_operations())


def _tags(schema: Any) -> list[list[str]]:
    return [result.ok().tags or [] for result in schema.get_all_operations()]


def _failures(app: FastAPI, headers: dict[str, str], paths: str | None, group: str) -> list[str]:
    config = schemathesis.Config.from_path(CONFIG)
    config.update(seed=1234, max_failures=None)
    project = config.projects.override
    project.update(headers=headers)
    project.checks.update(included_check_names=["all"])
    project.phases.update(phases=PHASES)
    project.generation.update(
        modes=list(schemathesis.GenerationMode), max_examples=MAX_EXAMPLES, deterministic=True
    )
    schema = _selected(
        schemathesis.openapi.from_asgi("/openapi.json", app, config=config), paths, group
    )
    assert _operations(schema), f"no operation in group {group!r}: {GROUPS}"
    found: list[str] = []
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            for checks in event.recorder.checks.values():
                for check in checks:
                    info = check.failure_info
                    if info is not None:
                        found.append(_describe(event.recorder.label, check.name, info))
        elif isinstance(event, events.NonFatalError | events.FatalError):
            found.append(f"engine error: {_error_text(event)}")
        elif isinstance(event, events.EngineFinished):
            found += [f"after run: {f.title}: {f.message}" for f in event.failures]
    return sorted(set(found))


def _path_in(ctx: Any, paths: str) -> bool:
    return re.match(paths, ctx.operation.path) is not None


def _describe(label: str, check: str, info: Any) -> str:
    failure = info.failure
    return f"{label} [{check}] {failure.title}: {failure.message}\n{info.code_sample}"


def _error_text(event: Any) -> str:
    value = getattr(event, "value", None) or getattr(event, "exception", None)
    return f"{type(value).__name__}: {value}"


@pytest.mark.parametrize(("as_key", "group"), RUNS)
def test_every_check_passes_on_every_operation(target: Target, as_key: str, group: str) -> None:
    if as_key == "admin":
        failures = _failures(target.app, target.admin, None, group)
    else:
        failures = _failures(target.app, target.store, STORE_KEY_PATHS, group)
    assert not failures, f"{len(failures)} failure(s):\n\n" + "\n\n".join(failures)


def test_the_groups_split_every_operation_once(settings: Settings) -> None:
    """The groups together are the whole API for each key, each operation in one group only,
    and every tag a group names is one the API has (a renamed tag would empty its group)."""
    dispatcher = InProcessDispatcher(settings)
    app = create_app(settings, dispatcher=dispatcher)
    config = schemathesis.Config.from_path(CONFIG)
    try:
        whole = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
    finally:
        shutdown_lifespans()
        dispatcher.close()
    everything = _operations(whole)
    for paths in (None, STORE_KEY_PATHS):
        wanted = everything if paths is None else _operations(_store_ops(whole, paths))
        split = [
            op
            for key, group in RUNS
            if (key == "admin") == (paths is None)
            for op in _operations(_selected(whole, paths, group))
        ]
        assert sorted(split) == wanted, (paths, set(wanted) ^ set(split))
    tags = {tag for label in _tags(whole) for tag in label}
    named = set().union(*GROUPS.values())
    assert named <= tags, named - tags
    assert len(everything) > 100  # the whole API, not an empty document


def _store_ops(schema: Any, paths: str) -> Any:
    return schema.exclude(lambda ctx: not _path_in(ctx, paths))
