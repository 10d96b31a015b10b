"""The statements on every store's path are built once, with their values bound at each run
(building and keying a statement cost more than running it). A value bound that way gets
no type from the call that gives it: where the statement does not give the parameter a
column's type (inside ``coalesce``, say), the driver would get the raw value, and on SQLite a
time would be stored in another format than every other time in master (and compared as
text). Each bound parameter of those statements must carry a type."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import ClauseElement
from sqlalchemy.engine import make_url
from sqlalchemy.types import NullType

from tenantry.db import identity
from tenantry.db.tenant.store import seed
from tenantry.operations import kit, provision_claim, provision_spare
from tenantry.services import audit, provisioning_records, stores

BUILT_ONCE = [
    (module, name)
    for module in (
        kit,
        provision_claim,
        provision_spare,
        provisioning_records,
        stores,
        audit,
        identity,
        seed,
    )
    for name, value in vars(module).items()
    if name.startswith("_") and name.isupper() and isinstance(value, ClauseElement)
]


def test_the_hot_path_statements_are_found() -> None:
    """The statements are found (a rename would make the next test vacuous)."""
    names = {name for _, name in BUILT_ONCE}
    assert {"_TAKE", "_END_JOB", "_ACTIVATE_STORE", "_CREATING", "_STAMP", "_INSERT"} <= names


@pytest.mark.parametrize("backend", ["sqlite", "postgresql", "mysql"])
@pytest.mark.parametrize(("module", "name"), BUILT_ONCE, ids=lambda v: getattr(v, "__name__", v))
def test_every_value_bound_at_run_time_has_a_type(module: Any, name: str, backend: str) -> None:
    statement = getattr(module, name)
    compiled = statement.compile(dialect=make_url(f"{backend}://").get_dialect()())
    # Every bound parameter as compiled (``binds`` keeps one per name, and a name used twice
    # may be typed in one place and not in the other).
    untyped = sorted(
        bind.key
        for bind in compiled.bind_names
        if bind.value is None and bind.callable is None and isinstance(bind.type, NullType)
    )
    assert not untyped, f"{module.__name__}.{name}: no type for {untyped}"
