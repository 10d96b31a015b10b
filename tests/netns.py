"""Hosts of a test's own: Linux network namespaces joined on one bridge, each process started
in its namespace with a host name of its own (a UTS namespace), so tenantry sees separate
machines that reach each other only over the network. Needs root and ``ip``; skipped locally,
failed in CI, when they are missing. Everything is removed after the test."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import IN_CI


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def require_namespaces() -> None:
    """Skip (fail in CI) unless this process may create network namespaces."""
    why = None
    if os.geteuid() != 0:
        why = "creating network namespaces needs root"
    elif shutil.which("ip") is None or shutil.which("unshare") is None:
        why = "`ip` (iproute2) and `unshare` (util-linux) are needed"
    if why:
        if IN_CI:
            pytest.fail(f"hosts of the test's own are needed in CI: {why}")
        pytest.skip(why)
    probe = f"ttprobe{uuid.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        # Not a missing package CI could install: the kernel or container refuses namespaces.
        pytest.skip(f"this machine refuses network namespaces: {made.stderr.strip()}")
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)


@dataclass
class Lan:
    """Hosts on one /24, the bridge in the first host's namespace; this process reaches them
    too (its own address ends in .254)."""

    subnet: str  # the first three octets
    tag: str
    hosts: list[str]
    processes: dict[str, list[subprocess.Popen[bytes]]] = field(default_factory=dict)

    def ns(self, host: str) -> str:
        """The network namespace of ``host``."""
        return f"tt{self.tag}{host}"

    def ip(self, host: str) -> str:
        """``host``'s address."""
        return f"{self.subnet}.{self.hosts.index(host) + 1}"

    def inside(self, host: str) -> list[str]:
        """A command prefix that runs in ``host``'s network namespace."""
        return ["ip", "netns", "exec", self.ns(host)]

    def start(
        self, host: str, argv: Sequence[str], env: dict[str, str], log: Path
    ) -> subprocess.Popen[bytes]:
        """Run ``argv`` on ``host`` (its namespace, host name ``tt-<host>``), output to
        ``log``."""
        named = ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', f"tt-{host}"]
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [*self.inside(host), *named, *argv],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.setdefault(host, []).append(proc)
        return proc

    def pull_the_plug(self, host: str) -> None:
        """``host`` dies at once: every process in it is SIGKILLed and its link goes down."""
        for proc in self.processes.get(host, []):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        listed = subprocess.run(
            ["ip", "netns", "pids", self.ns(host)], capture_output=True, text=True, check=False
        )
        for pid in listed.stdout.split():
            with suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        _ip("-n", self.ns(host), "link", "set", f"tv{self.tag}{self.hosts.index(host)}", "down")


@contextmanager
def lan(*hosts: str) -> Iterator[Lan]:
    """Namespaces for ``hosts`` joined by a bridge in the first one's namespace."""
    require_namespaces()
    net = Lan(
        subnet=f"10.{random.randint(100, 250)}.{random.randint(0, 255)}",
        tag=uuid.uuid4().hex[:4],
        hosts=list(hosts),
    )
    hub = net.ns(hosts[0])
    made: list[str] = []
    try:
        for host in hosts:
            _ip("netns", "add", net.ns(host))
            made.append(net.ns(host))
            _ip("-n", net.ns(host), "link", "set", "lo", "up")
        _ip("-n", hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", hub, "addr", "add", f"{net.ip(hosts[0])}/24", "dev", "br0")
        _ip("-n", hub, "link", "set", "br0", "up")
        for index, host in enumerate(hosts[1:], start=1):
            _join(net, hub, f"tv{net.tag}{index}", f"tb{net.tag}{index}", host)
        # This process's own leg, so the test can reach every host.
        _ip("link", "add", f"tv{net.tag}r", "type", "veth", "peer", "name", f"tb{net.tag}r")
        _ip("link", "set", f"tb{net.tag}r", "netns", hub)
        _ip("-n", hub, "link", "set", f"tb{net.tag}r", "master", "br0", "up")
        _ip("addr", "add", f"{net.subnet}.254/24", "dev", f"tv{net.tag}r")
        _ip("link", "set", f"tv{net.tag}r", "up")
        yield net
    finally:
        for procs in net.processes.values():
            for proc in procs:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=30)
        subprocess.run(["ip", "link", "del", f"tv{net.tag}r"], capture_output=True, check=False)
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def _join(net: Lan, hub: str, leg: str, peer: str, host: str) -> None:
    """A veth pair from ``host``'s namespace (``leg``, its address) to the bridge (``peer``)."""
    _ip("link", "add", leg, "type", "veth", "peer", "name", peer)
    _ip("link", "set", leg, "netns", net.ns(host))
    _ip("link", "set", peer, "netns", hub)
    _ip("-n", hub, "link", "set", peer, "master", "br0", "up")
    _ip("-n", net.ns(host), "addr", "add", f"{net.ip(host)}/24", "dev", leg)
    _ip("-n", net.ns(host), "link", "set", leg, "up")
