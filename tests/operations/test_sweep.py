"""The sweep's part for operations run by a command whose process died, on a real master of
each backend: every such kind is ended, once, saying what to run again; a live one is left."""

from __future__ import annotations

import time
from collections.abc import Callable

from tenantry.db.master.models import OperationKind
from tenantry.operations import sweep
from tenantry.operations.kit import OperationKit
from tests.operations.test_kit import at_once


def test_every_command_run_kind_whose_process_died_is_ended_once_with_what_to_run(
    kits: Callable[..., OperationKit],
) -> None:
    dead = kits(lease_s=0.2)  # a command that will die: its leases are short
    ids = {}
    for kind in sweep.RERUN:
        ids[kind] = dead.create(OperationKind(kind), target="shop-1", step="starting")
        assert dead.claim(ids[kind]) is not None
        dead.progress(ids[kind], step="working")
    alive = kits(lease_s=60)
    live = alive.create(OperationKind.STORE_DELETE, target="shop-2")
    assert alive.claim(live) is not None
    time.sleep(0.5)  # the dead command's leases lapse; the live one's does not

    first, second = kits(), kits()
    ended = at_once(lambda: sweep.end_abandoned(first), lambda: sweep.end_abandoned(second))
    swept = [i for result in ended if isinstance(result, list) for i in result]
    assert sorted(swept) == sorted(ids.values())  # each ended by exactly one of the two sweeps
    for kind, operation_id in ids.items():
        operation = first.get(operation_id)
        assert operation.status == "failed"
        assert operation.error == (
            "the process running it died (its lease lapsed) during step 'working'."
        )
        assert operation.message == sweep.RERUN[kind].format(target="shop-1")
    assert first.get(live).status == "running"
