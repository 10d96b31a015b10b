"""Schemathesis over the whole API, in-process, with every check (the CLI's ``--checks all``).

Run once with an admin key over every operation, and once with a store key on a provisioned
SQLite store over the operations a store key may call (so the store-data routes do real work;
everything else only refuses a store key, which the admin run and the key tests cover): every
phase (examples, coverage, fuzzing, stateful where the
document has links), positive and negative data, a bounded number of examples per operation.
Any failure of any check, or any error of the engine, fails the test with schemathesis's
report of it (the operation, the check, a curl to reproduce it).
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

#: Examples per operation and phase: enough to reach every check, small enough that both
#: runs together stay well under three minutes on two cores.
MAX_EXAMPLES = 25
PHASES = ["examples", "coverage", "fuzzing", "stateful"]

#: The operations a store key may call: its store and that store's data, its provisioning job.
STORE_KEY_PATHS = r"^/(stores/\{store_ref\}|provision/|operations|health)"


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


def _failures(app: FastAPI, headers: dict[str, str], paths: str | None) -> list[str]:
    config = schemathesis.Config.from_path(CONFIG)
    config.update(seed=1234, max_failures=None)
    project = config.projects.override
    project.update(headers=headers)
    project.checks.update(included_check_names=["all"])
    project.phases.update(phases=PHASES)
    project.generation.update(
        modes=list(schemathesis.GenerationMode), max_examples=MAX_EXAMPLES, deterministic=True
    )
    loaded = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
    # Excluded, not included: the configuration file's own operation filter already
    # includes every operation, and includes add up.
    schema = loaded if paths is None else loaded.exclude(lambda ctx: not _path_in(ctx, paths))
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


@pytest.mark.parametrize("as_key", ["admin", "store"])
def test_every_check_passes_on_every_operation(target: Target, as_key: str) -> None:
    if as_key == "admin":
        failures = _failures(target.app, target.admin, None)
    else:
        failures = _failures(target.app, target.store, STORE_KEY_PATHS)
    assert not failures, f"{len(failures)} failure(s):\n\n" + "\n\n".join(failures)
