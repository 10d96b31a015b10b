"""Claims of a process of this host that died are ended at once, on every master backend: its
operations' leases and its locks; a live process's claims, and another host's, are left to
their leases."""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator

import pytest

from tenantry.db.master.models import OperationKind
from tenantry.errors import Conflict
from tenantry.operations.kit import LostClaim, OperationKit, this_host
from tenantry.operations.lease_takeover import release_dead_holders_here

#: Far longer than the test: only the takeover can free these claims in time.
LONG_LEASE_S = 600.0


def _name(pid: int, host: str | None = None, prefix: str = "") -> str:
    """A holder name as :func:`tenantry.operations.kit.holder_id` makes them."""
    return f"{prefix}{host or this_host()}:{pid}:{uuid.uuid4().hex[:8]}"


@pytest.fixture
def live_pid() -> Iterator[int]:
    """The pid of a process that runs for the whole test."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_dead_local_holders_leases_and_locks_end_and_no_one_elses(
    kits: Callable[..., OperationKit], live_pid: int
) -> None:
    dead_pid = _dead_pid()
    dead = kits(LONG_LEASE_S, _name(dead_pid, prefix="import:"))
    live = kits(LONG_LEASE_S, _name(live_pid))
    elsewhere = kits(LONG_LEASE_S, _name(dead_pid, host="another-host"))
    # The same host name in another container (pid namespace), where that pid may run.
    beside = kits(LONG_LEASE_S, _name(dead_pid, host=f"{socket.gethostname()}/1"))
    kept = {"live": live, "elsewhere": elsewhere, "beside": beside}
    ops = {}
    for key, kit in {"dead": dead, **kept}.items():
        ops[key] = kit.create(OperationKind.INIT, target=key)
        assert kit.claim(ops[key]) is not None
        kit.acquire_lock(f"lock:{key}", operation_id=ops[key])
    rescuer = kits(LONG_LEASE_S)

    assert release_dead_holders_here(rescuer.engine) == 2  # the dead one's lease and lock
    assert release_dead_holders_here(rescuer.engine) == 0  # nothing left to end

    taken = rescuer.claim(ops["dead"])
    assert taken is not None
    assert taken.attempts == 2
    assert rescuer.acquire_lock("lock:dead").took_over_from == ops["dead"]
    with pytest.raises(LostClaim):  # were it still running, it would stop here
        dead.progress(ops["dead"], step="next")
    for key in kept:
        assert rescuer.claim(ops[key]) is None
        with pytest.raises(Conflict):
            rescuer.acquire_lock(f"lock:{key}")
    assert rescuer.find_stalled() == []  # and a sweep finds nothing to resume
