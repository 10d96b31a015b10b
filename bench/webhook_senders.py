"""The load generators of bench/webhooks.py: each sends every pre-signed event exactly once.

* ``wrk`` (C, LuaJIT script ``wrk_webhooks.lua``): leaves the cores to the server.
* ``autocannon`` (Node.js, ``node/autocannon_webhooks.js``): the independent second sender;
  its per-request latencies and its own clock give the rate and percentiles.
* ``httpx`` (Python, asyncio): needs nothing installed; competes with the server for the CPU.

Each can pace its sending (``rate``: events per second offered, whatever the answers): wrk and
httpx spread the requests evenly (each at its slot of a schedule); autocannon's rate limit is
a budget per connection per second, sent in a burst at the start of each second.

Every sender reports the same :class:`SendStats`: webhook deliveries answered 2xx, the
others, the span from the first request sent to the last answer on the sender's own clock,
and latency percentiles of the 2xx answers only. Nothing but webhooks is ever sent.
"""

from __future__ import annotations

import asyncio
import json
import queue
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from benchkit import pct

HERE = Path(__file__).parent
WRK_SCRIPT = HERE / "wrk_webhooks.lua"
NODE_DIR = HERE / "node"
AUTOCANNON_SCRIPT = NODE_DIR / "autocannon_webhooks.js"
#: Stop wrk when no thread reported an answer for this long (events were lost).
STALL_S = 15.0

SENDERS = ("wrk", "autocannon", "httpx")


@dataclass
class SendStats:
    """What one sender saw."""

    sender: str
    events: int
    answered: int = 0  # 2xx webhook answers
    outcomes: Counter[str] = field(default_factory=Counter)  # status class or error
    seconds: float = 0.0  # first request sent → last answer, the sender's clock
    latency_ms: dict[str, float | None] = field(default_factory=dict)  # of the 2xx answers
    #: Every 2xx answer's latency (ms): rounds pool them for their percentiles.
    samples: list[float] = field(default_factory=list, repr=False)

    @property
    def rate(self) -> float:
        """2xx answers per second of sending."""
        return self.answered / self.seconds if self.seconds else 0.0


def available(sender: str) -> str | None:
    """Why ``sender`` cannot run here, or None."""
    if sender == "wrk" and not shutil.which("wrk"):
        return "wrk is not installed (apt-get install wrk)"
    if sender == "autocannon" and not shutil.which("node"):
        return "Node.js is not installed (autocannon runs on it)"
    return None


def _percentiles(latencies: list[float]) -> dict[str, float | None]:
    if not latencies:
        return {"p50": None, "p90": None, "p99": None, "max": None}
    return {
        "p50": pct(latencies, 0.50),
        "p90": pct(latencies, 0.90),
        "p99": pct(latencies, 0.99),
        "max": max(latencies),
    }


def write_requests(path: Path, signed: list[tuple[str, bytes]]) -> Path:
    """The pre-signed requests, one ``signature<TAB>body`` line each (wrk and autocannon)."""
    with path.open("w") as out:
        for signature, body in signed:
            out.write(f"{signature}\t{body.decode()}\n")
    return path


def send_httpx(
    url: str, signed: list[tuple[str, bytes]], clients: int, rate: float | None = None
) -> SendStats:
    """Send with ``clients`` httpx clients, one connection each, in one event loop; paced at
    ``rate`` events per second when given."""
    return asyncio.run(_send_httpx(url, signed, clients, rate))


async def _send_httpx(
    url: str, signed: list[tuple[str, bytes]], clients: int, rate: float | None
) -> SendStats:
    stats = SendStats("httpx", len(signed))
    latencies: list[float] = []
    todo = iter(signed)  # shared by the clients: one event loop, no lock needed
    last_answer = 0.0
    slot = 0
    started = time.perf_counter()

    async def client() -> None:
        nonlocal last_answer, slot
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(timeout=60, limits=limits) as http:
            for signature, body in todo:
                if rate:
                    due, slot = started + slot / rate, slot + 1
                    if (wait := due - time.perf_counter()) > 0:
                        await asyncio.sleep(wait)
                headers = {"Stripe-Signature": signature, "content-type": "application/json"}
                t0 = time.perf_counter()
                try:
                    response = await http.post(url, content=body, headers=headers)
                except httpx.HTTPError as exc:
                    stats.outcomes[type(exc).__name__] += 1
                    continue
                last_answer = time.perf_counter()
                stats.outcomes[f"{response.status_code // 100}xx"] += 1
                if response.is_success:
                    stats.answered += 1
                    latencies.append((last_answer - t0) * 1000)

    await asyncio.gather(*(client() for _ in range(clients)))
    stats.seconds = max(0.0, last_answer - started)
    stats.latency_ms = _percentiles(latencies)
    stats.samples = latencies
    return stats


def send_wrk(
    url: str,
    requests: Path,
    clients: int,
    rate: float | None = None,
    threads: int = 1,
) -> SendStats:
    """Send with wrk (paced at ``rate`` events per second when given, split over its
    threads); each thread stops after its slice, and wrk is interrupted when every thread said
    so, or when no thread reported progress for ``STALL_S`` (answers that will not come). The
    stall is read from wrk's own output, never by asking the server (a count of the stored
    events every second was load on the server that the other sender did not add). Latencies
    are the script's own per-request timings (see ``wrk_webhooks.lua``), not wrk's histogram,
    which wrk corrects for coordinated omission.

    One thread by default, like autocannon's one event loop: on a 2-core machine a second
    sender thread takes a core from the server, and wrk's figures then measure the sender
    (SQLite p99 28 % above autocannon's with two threads, 3 % below with one, same run)."""
    events = sum(1 for _ in requests.open())
    threads = max(1, min(threads, events))
    proc = subprocess.Popen(
        [
            "wrk",
            f"-t{threads}",
            f"-c{max(clients, threads)}",
            "-d3600s",
            "--timeout",
            "30s",
            "-s",
            str(WRK_SCRIPT),
            url,
            "--",
            str(requests),
            str(threads),
            str((rate or 0) / threads),
            str(requests.with_suffix(".latency")),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    output: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    finished = 0
    while finished < threads:
        try:
            line = lines.get(timeout=STALL_S)
        except queue.Empty:
            break  # wrk is waiting for answers that will not come
        if line is None:
            break
        if line.startswith("PROGRESS"):
            continue
        output.append(line)
        finished += line.startswith("THREAD_DONE")
    proc.send_signal(signal.SIGINT)  # wrk sleeps out -d otherwise; SIGINT prints the summary
    proc.wait(timeout=60)
    reader.join(timeout=10)
    while not lines.empty():
        line = lines.get()
        if line is not None:
            output.append(line)
    result = next((x for x in output if x.startswith("RESULT")), None)
    if result is None:
        raise RuntimeError("wrk printed no result:\n" + "".join(output[-20:]))
    fields = {k: int(float(v)) for k, v in (part.split("=") for part in result.split()[1:])}
    stats = SendStats("wrk", fields["events"])
    stats.answered = fields["ok"]
    stats.outcomes["2xx"] = fields["ok"]
    if fields["bad"]:
        stats.outcomes["non-2xx"] = fields["bad"]
    if fields["errors"]:
        stats.outcomes["socket errors"] = fields["errors"]
    stats.seconds = fields["span_us"] / 1e6
    # Each thread's per-request latencies (2xx answers), written by the script as it stopped.
    latencies: list[float] = []
    for part in sorted(requests.parent.glob(requests.with_suffix(".latency").name + ".*")):
        latencies.extend(int(x) / 1000 for x in part.read_text().split())
        part.unlink()
    stats.latency_ms = _percentiles(latencies)
    stats.samples = latencies
    return stats


def ensure_autocannon() -> None:
    """Install the pinned autocannon (bench/node/package-lock.json) on first use."""
    if (NODE_DIR / "node_modules" / "autocannon").is_dir():
        return
    subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--silent"],
        cwd=NODE_DIR,
        check=True,
        timeout=300,
    )


def send_autocannon(
    url: str, requests: Path, clients: int, workdir: Path, rate: float | None = None
) -> SendStats:
    """Send with autocannon (``amount`` = events, each request the next line), paced at
    ``rate`` events per second when given."""
    ensure_autocannon()
    out = workdir / "autocannon.json"
    subprocess.run(
        [
            "node",
            str(AUTOCANNON_SCRIPT),
            url,
            str(requests),
            str(clients),
            str(out),
            str(rate or 0),
        ],
        check=True,
        timeout=3600,
    )
    data = json.loads(out.read_text())
    stats = SendStats("autocannon", int(data["events"]))
    stats.answered = int(data["ok"])
    stats.outcomes["2xx"] = stats.answered
    if data["bad"]:
        stats.outcomes["non-2xx"] = int(data["bad"])
    if data["errors"]:
        stats.outcomes["socket errors"] = int(data["errors"])
    stats.seconds = int(data["span_us"]) / 1e6
    stats.samples = [float(x) for x in data["latencies_ms"]]
    stats.latency_ms = _percentiles(stats.samples)
    return stats
