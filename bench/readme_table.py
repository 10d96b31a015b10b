"""Regenerate the README's performance table from the benches' JSON results.

    python bench/readme_table.py [--results bench/results] [--readme README.md] [--check]
                                 [--compare OTHER_RESULTS]

Each row is read from one bench's JSON (``provision``, ``burst``, ``webhooks``, ``fleet``,
``fleet_schemas``, ``backup``, ``import``, ``cli``, ``scale_load``): what tenantry measured,
the floor or anchor measured in the same run, their ratio, and the run it came from (commit and
date). The table replaces what lies between the ``<!-- bench-table:start -->`` and
``<!-- bench-table:end -->`` lines. ``--check`` changes nothing and exits 1 when the README's
table is not the one the JSON files give (CI runs it, so the table cannot be typed by hand or fall
behind the results). ``--compare OTHER`` prints each figure beside another run's results
directory and exits 1 when one differs by more than 15 % (the benches must reproduce: run each
twice, into two directories, and compare).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

START = "<!-- bench-table:start -->"
END = "<!-- bench-table:end -->"


@dataclass(frozen=True)
class Row:
    """One line of the table."""

    measure: str
    tenantry: str
    floor: str  # the floor or anchor, measured in the same run
    ratio: str
    run: str


def _run(data: dict[str, Any]) -> str:
    run = data.get("run") or {}
    commit = str(run.get("commit") or data.get("commit") or "?")
    short = commit[:8] + ("-dirty" if commit.endswith("-dirty") else "")
    return f"`{short}` {str(run.get('when') or '')[:10]}".strip()


def _ms(value: float) -> str:
    return f"{value:.1f} ms" if value < 100 else f"{value:.0f} ms"


def _s(value: float) -> str:
    return f"{value:.2f} s"


def _x(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}x"


def _p99(value: float | None) -> str:
    """ ", p99 …", or nothing for a run too short to have one (fewer than 100 samples)."""
    return "" if value is None else f", p99 {value:.1f}"


def provision_rows(data: dict[str, Any]) -> Iterator[Row]:
    """Per backend: the template build, and a store provisioned against the template copy."""
    run = _run(data)
    for r in data["results"]:
        if "error" in r:
            continue
        per = r["per_store_ms"]
        copy = r["floor"]["copy_ms"]
        # Runs since the spare pool: a cold row (no pool) and a warm one (a spare claimed).
        path = f", {r['path']}" if r.get("path") else ""
        yield Row(
            f"provision a store, {r['backend']}{path}, median of {r['stores']}",
            f"{_ms(per['median'])} (mean {per['mean']:.1f}{_p99(per.get('p99'))})",
            f"template copy {_ms(copy)}",
            # A copy under a millisecond (a SQLite file) is a floor too small to divide by:
            # two passes put the same 9 ms store at 36x and 50x of it. Its target is in ms.
            _x(r.get("x_copy_paired") or (per["median"] / copy)) if copy >= 1.0 else "",
            run,
        )
        if r.get("path") == "warm pool":
            continue  # the template build is the cold row's
        yield Row(
            f"build the template once, {r['backend']} (run of {r['stores']})",
            _ms(r["template_build_ms"]) if r.get("template_build_ms") is not None else "present",
            "",
            "",
            run,
        )


def _rounds(m: dict[str, Any]) -> str:
    """How a sender's rounds were summed up: the median rate, the p99 pooled or a median."""
    if m.get("p99_samples"):
        return f"median rate of {m['rounds']} rounds, p99 of their {m['p99_samples']} answers"
    return f"median of {m['rounds']}"


def webhook_rows(data: dict[str, Any]) -> Iterator[Row]:
    """Per backend and sender: the median ingest rate at full speed and the pooled p99 paced
    at a fixed offered rate, each beside the other sender's of the same run; then the median
    processing rate."""
    run = _run(data)
    events = data.get("config", {}).get("events", "?")
    summary = data.get("medians") or [
        {
            "backend": r["backend"],
            "sender": r["sender"],
            "rounds": 1,
            "ingested_per_s": r["ingested_per_s"],
            "p99_ms": r["latency_ms"]["p99"],
            "processed_per_s": r["processed_per_s"],
        }
        for r in data["results"]
        if "error" not in r
    ]
    full = [m for m in summary if m.get("mode", "max") == "max"]
    paced = [m for m in summary if m.get("mode") == "paced"]
    for m in full:
        others = [o for o in full if o["backend"] == m["backend"] and o is not m]
        anchor = ", ".join(
            f"{o['sender']} {o['ingested_per_s']:.0f}/s, p99 {o['p99_ms']:.1f} ms" for o in others
        )
        ratio = (
            _x(m["ingested_per_s"] / others[0]["ingested_per_s"])
            if others and others[0]["ingested_per_s"]
            else ""
        )
        yield Row(
            f"webhook ingest at full speed, {m['backend']}, {events} events ({m['sender']}, "
            f"{_rounds(m)})",
            f"{m['ingested_per_s']:.0f}/s, p99 {m['p99_ms']:.1f} ms",
            anchor,
            ratio,
            run,
        )
    for m in paced:
        others = [o for o in paced if o["backend"] == m["backend"] and o is not m]
        yield Row(
            f"webhook latency paced at {m['offered_per_s']:.0f}/s offered, {m['backend']} "
            f"({m['sender']}, {_rounds(m)})",
            f"p99 {m['p99_ms']:.1f} ms ({m['ingested_per_s']:.0f}/s answered)",
            ", ".join(f"{o['sender']} p99 {o['p99_ms']:.1f} ms" for o in others),
            _x(m["p99_ms"] / others[0]["p99_ms"]) if others and others[0]["p99_ms"] else "",
            run,
        )
    for m in full:
        yield Row(
            f"webhooks processed while ingest runs, {m['backend']} ({m['sender']} runs)",
            f"{m['processed_per_s']:.0f}/s",
            "",
            "",
            run,
        )


def _verify(step: dict[str, Any], backend: str) -> tuple[str, str, str]:
    """A verify step's figure, its raw floor (connect, read the version, close, per tenant,
    each run right after one of the floor) and the median of the pairs' ratios.

    Not on SQLite: there the floor is the file system's (a connection to a WAL file creates
    and, closing, deletes its -wal and -shm files); 100 such reads took 22 to 70 ms within one
    minute on this host, in stretches of a few seconds, while verify beside it held within
    3 %, so the ratio of two runs moved 28-36 % with the floor alone."""
    ours = f"{step['ms_per_tenant']:.1f} ms/tenant"
    if "over_floor" not in step:  # results from before the floor was measured
        return ours, "", ""
    floor = f"raw version reads {step['floor']['ms_per_tenant']:.1f} ms/tenant"
    return ours, floor, _x(step["over_floor"]) if backend != "sqlite" else ""


def _verify_row(step: dict[str, Any], tenants: int, backend: str, run: str) -> Row:
    return Row(
        f"fleet verify, {tenants} {backend} tenants (store schema)", *_verify(step, backend), run
    )


def fleet_rows(data: dict[str, Any]) -> Iterator[Row]:
    """The store schema's apply, no-op and verify against the naive loop or the raw floor."""
    run = _run(data)
    for r in data["results"]:
        if "error" in r or r.get("schema", "one-table") != "store":
            continue
        steps, n, b = r["steps"], r["tenants"], r["backend"]
        if r["kind"] == "noop":
            noop, floor = steps["tenantry_noop"], steps["raw_floor"]
            yield Row(
                f"fleet run, nothing to apply, {n} {b} tenants",
                _s(noop["seconds"]),
                f"raw psycopg loop {_s(floor['seconds'])}",
                _x(noop.get("over_floor") or noop["seconds"] / floor["seconds"]),
                run,
            )
            if "verify" in steps:  # PostgreSQL's verify, over these tenants
                yield _verify_row(steps["verify"], n, b, run)
            continue
        # Runs since the loop and tenantry take turns: the median of each round's ratio.
        paired = r.get("naive_over_tenantry") if r.get("ratios") == "paired" else None
        for step, naive, what, key in (
            ("tenantry_apply", "naive_apply", "one revision", "apply"),
            ("tenantry_noop", "naive_noop", "nothing to apply", "noop"),
        ):
            ours, theirs = steps[step]["seconds"], steps[naive]["seconds"]
            if "over_floor" in steps[step]:  # the raw apply, each round just before ours
                yield Row(
                    f"fleet run, {what}, {n} {b} tenants (store schema)",
                    _s(ours),
                    f"raw driver loop {_s(steps['raw_apply']['seconds'])} "
                    f"(naive Alembic loop {_s(theirs)})",
                    _x(steps[step]["over_floor"]),
                    run,
                )
                continue
            yield Row(
                f"fleet run, {what}, {n} {b} tenants (store schema)",
                _s(ours),
                f"naive Alembic loop {_s(theirs)}",
                _x(1 / paired[key] if paired else ours / theirs),
                run,
            )
        if "verify" in steps:  # PostgreSQL's is timed over the no-op run's tenants
            yield _verify_row(steps["verify"], n, b, run)


def fleet_schemas_rows(data: dict[str, Any]) -> Iterator[Row]:
    """Schema-per-tenant apply and no-op against django-tenants' ``migrate_schemas`` with the
    same concurrency (its standard executor beside it), then verify."""
    run = _run(data)
    for r in data["results"]:
        if "error" in r:
            continue
        steps, n, c = r["steps"], r["tenants"], r["concurrency"]
        for what, label in (("apply", "one revision"), ("noop", "nothing to apply")):
            ours = steps[f"tenantry_{what}"]["seconds"]
            multi = steps[f"dt_multiprocessing_{what}"]["seconds"]
            standard = steps[f"dt_standard_{what}"]["seconds"]
            yield Row(
                f"fleet run, {label}, {n} schemas of one PostgreSQL database (store schema)",
                _s(ours),
                f"django-tenants migrate_schemas {_s(multi)} ({c} processes; "
                f"standard executor {_s(standard)})",
                # Paired (each round's tenantry over django-tenants), where the run has it.
                _x(r.get("tenantry_over_django_tenants", {}).get(what, ours / multi)),
                run,
            )
        yield Row(
            f"fleet verify, {n} schemas of one PostgreSQL database (store schema)",
            *_verify(steps["verify"], "postgresql"),
            run,
        )


def backup_rows(data: dict[str, Any]) -> Iterator[Row]:
    """Backup and verify against pg_dump/pg_restore in the same run."""
    run = _run(data)
    for r in data["results"]:
        if "error" in r:
            continue
        if r["part"] == "one":
            yield Row(
                f"backup + verify one {r['size_mb']:g} MB PostgreSQL database",
                _s(r["tenantry"]["total_s"]),
                f"pg_dump + pg_restore {_s(r['plain']['total_s'])}",
                _x(r["tenantry_over_plain"]["total"]),
                run,
            )
        else:
            scope = f"{r['tenants']} tenants x {r['tenant_mb']:g} MB"
            c = r["concurrency"]
            yield Row(
                f"backup + verify {scope}, c={c}",
                _s(r["tenantry"]["seconds"]),
                f"pg_dump + pg_restore loop {_s(r['plain']['seconds'])}",
                _x(r["tenantry_over_plain"]["total"]),
                run,
            )
            if "plain_parallel" in r:  # the plain tools as many at a time, in the same turns
                yield Row(
                    f"backup + verify {scope}, c={c}, against the plain tools {c} at a time",
                    _s(r["tenantry"]["seconds"]),
                    f"pg_dump + pg_restore, {c} at a time {_s(r['plain_parallel']['seconds'])}",
                    _x(r["tenantry_over_plain"]["parallel"]),
                    run,
                )


def burst_rows(data: dict[str, Any]) -> Iterator[Row]:
    """Stores active per second in a burst over HTTP, against a store's two parts one after
    the other: created alone by the same clients on the same server, and a template copy."""
    run = _run(data)
    for r in data["results"]:
        if "error" in r:
            continue
        copy_rate = r["floor"]["per_s"]
        copies = f"template copies {copy_rate:.1f}/s"
        creates = r.get("create_floor")
        # A create and a copy one after the other. Times as long as the floor takes (rates
        # inverted, as for the timed rows). Runs before the create floor have a ratio to the
        # copies only, and none on SQLite: a file copy is thousands a second and its rate
        # moved 2x between runs whose bursts agreed within 2 %.
        floor = 1 / (1 / creates["per_s"] + 1 / copy_rate) if creates else copy_rate
        ratio = floor / r["active_per_s"] if r["active_per_s"] else None
        yield Row(
            f"{r['stores']} stores created and provisioned over HTTP, {r['backend']}, "
            f"{r['clients']} clients",
            f"{r['active_per_s']:.1f} stores/s ({r['active']} active)",
            f"a create and a copy one after the other {floor:.1f}/s (stores created alone "
            f"{creates['per_s']:.1f}/s, {copies})"
            if creates
            else copies,
            _x(ratio) if creates or r["backend"] != "sqlite" else "",
            run,
        )


def cli_rows(data: dict[str, Any]) -> Iterator[Row]:
    """Start-up of tenantry commands against ``alembic --version``."""
    run = _run(data)
    anchor = next((r for r in data["rows"] if r["command"] == data["anchor"]), None)
    for r in data["rows"]:
        if anchor is None or r is anchor:
            continue
        yield Row(
            f"`{r['command']}` start-up, median of {data['runs']}",
            _ms(r["median_ms"]),
            f"`{anchor['command']}` {_ms(anchor['median_ms'])}",
            _x(r["vs_anchor"]),
            run,
        )


def scale_load_rows(data: dict[str, Any]) -> Iterator[Row]:
    """Each larger size's tenant-read p99, API RSS, connections and drain against the smallest
    size of the same run (the judged criteria: p99 within 2x, RSS flat, connections bounded)."""
    run = _run(data)
    sizes = sorted(data["results"], key=lambda r: r["tenants"]["total"])
    if not sizes:
        return
    base = sizes[0]

    def who(r: dict[str, Any]) -> str:
        t = r["tenants"]
        return f"{t['total']:,} tenants ({t['sqlite']:,} SQLite + {t['postgresql']:,} PostgreSQL)"

    for r in sizes[1:] if len(sizes) > 1 else sizes:
        read, base_read = r["load"]["read_ms"], base["load"]["read_ms"]
        yield Row(
            f"tenant read p99 under a mixed load, {who(r)}, {r['load']['clients']} clients",
            f"{_ms(read['p99'])} (p50 {read['p50']:.1f}, {r['load']['rate_per_s']:.0f} req/s)",
            f"{base['tenants']['total']} tenants {_ms(base_read['p99'])}",
            _x(read["p99"] / base_read["p99"] if base_read.get("p99") else None),
            run,
        )
        rss, base_rss = r["rss_mb"], base["rss_mb"]
        yield Row(
            f"API RSS over the load after warm-up, {who(r)}",
            f"{rss['after_warmup']:.0f} → {rss['end_of_steady']:.0f} MB",
            f"{base['tenants']['total']} tenants {base_rss['after_warmup']:.0f} → "
            f"{base_rss['end_of_steady']:.0f} MB",
            "",
            run,
        )
        conns = r["connections"]
        yield Row(
            f"API's open tenant connections (max over the run), {who(r)}",
            f"{conns['api_max_total']}",
            f"bound {conns['bound_per_server']}",
            _x(conns["api_max_total"] / conns["bound_per_server"]),
            run,
        )
        d, base_d = r["drain"], base["drain"]
        yield Row(
            f"drain {d['stores']} PostgreSQL stores under the load, {who(r)}",
            f"{d['stores_per_s']:.2f} stores/s, {d['on_another_server']} moved; 5xx or no answer: "
            f"{d['errors_inside_own_window']} in the store's own move, "
            f"{d['errors_outside']} outside",
            f"{base['tenants']['total']} tenants: {base_d['stores']} stores, "
            f"{base_d['stores_per_s']:.2f}/s; 5xx or no answer "
            f"{base_d['errors_inside_own_window']} in own move, {base_d['errors_outside']} outside",
            "",
            run,
        )


def import_rows(data: dict[str, Any]) -> Iterator[Row]:
    """``import shared`` PostgreSQL → PostgreSQL against COPY TO STDOUT | COPY FROM STDIN."""
    run, r = _run(data), data["result"]
    size = f"{r['stores']} stores x {r['rows_per_store']} rows, concurrency {r['concurrency']}"
    baseline = f"COPY out / COPY in {_s(r['baseline_s'])}"
    if "baseline_before_s" in r:
        baseline += " (mean of before and after)"
    yield Row(
        f"import shared, postgresql to postgresql, copy + verify, {size}",
        _s(r["import_s"]),
        baseline,
        _x(r["copy_verify_ratio"]),
        run,
    )
    yield Row(
        f"import shared, the same with the checks of the whole source first, {size}",
        _s(r["import_s"] + r["checks_s"]),
        baseline,
        _x(r["with_checks_ratio"]),
        run,
    )
    if "baseline_by_keys_s" in r:
        yield Row(
            "import shared, the same against the baseline given the import's filter "
            f"(order ids as an array, looked up in the index), {size}",
            _s(r["import_s"] + r["checks_s"]),
            f"COPY out / COPY in {_s(r['baseline_by_keys_s'])}",
            _x(r["with_checks_ratio_same_filter"]),
            run,
        )


#: The benches in the order the table shows them.
BENCHES: dict[str, Callable[[dict[str, Any]], Iterator[Row]]] = {
    "provision": provision_rows,
    "burst": burst_rows,
    "webhooks": webhook_rows,
    "fleet": fleet_rows,
    "fleet_schemas": fleet_schemas_rows,
    "backup": backup_rows,
    "import": import_rows,
    "cli": cli_rows,
    "scale_load": scale_load_rows,
}


def rows_of(results: Path) -> Iterator[tuple[str, Row]]:
    """Every row of every bench whose JSON is in ``results``, with the bench's name."""
    for name, rows in BENCHES.items():
        path = results / f"{name}.json"
        if path.exists():
            for row in rows(json.loads(path.read_text())):
                yield name, row


def table(results: Path) -> str:
    """The markdown table of every bench whose JSON is in ``results``."""
    lines = [
        "| bench | measure | tenantry | floor or anchor, same run | ratio | run |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in rows_of(results):
        lines.append(
            f"| {name} | {row.measure} | {row.tenantry} | {row.floor} | {row.ratio} | {row.run} |"
        )
    if len(lines) == 2:
        return "No results are committed yet: run the benches, then this script."
    return "\n".join(lines)


#: Two runs reproduce when each figure is within this of the other.
REPRODUCE = 0.15


def _first_number(text: str) -> float | None:
    match = re.search(r"[0-9]+(?:\.[0-9]+)?", text)
    return float(match.group()) if match else None


def compare(results: Path, other: Path) -> bool:
    """Print each figure of two runs side by side; whether all are within :data:`REPRODUCE`
    (the tenantry figure, its ratio to the same run's floor, and the rates and p99 in it)."""
    theirs = {(name, row.measure): row for name, row in rows_of(other)}
    ok = True
    _print_probes(results, other)
    print(f"{'measure':72} {'this run':>22} {'other run':>22} {'diff':>8}")
    for name, row in rows_of(results):
        match = theirs.get((name, row.measure))
        if match is None:
            print(f"{row.measure[:72]:72} {row.tenantry:>22} {'(not in the other)':>22}")
            continue
        pairs = [(row.tenantry, match.tenantry)]
        if row.ratio and match.ratio:  # what the targets judge: the figure over its floor
            pairs.append((f"ratio {row.ratio}", f"ratio {match.ratio}"))
        pairs += list(
            zip(
                re.findall(r"p99 [0-9.]+", row.tenantry),
                re.findall(r"p99 [0-9.]+", match.tenantry),
                strict=False,
            )
        )
        for mine, other_text in pairs:
            a = _first_number(mine.removeprefix("p99 "))
            b = _first_number(other_text.removeprefix("p99 "))
            if a is None or b is None or not b:
                continue
            diff = a / b - 1
            within = abs(diff) <= REPRODUCE
            ok = ok and within
            flag = "" if within else "  <- outside"
            print(f"{row.measure[:72]:72} {mine:>22} {other_text:>22} {diff:+8.1%}{flag}")
    return ok


def _machine(results: Path, name: str) -> dict[str, Any] | None:
    path = results / f"{name}.json"
    if not path.exists():
        return None
    machine = json.loads(path.read_text()).get("run", {}).get("machine")
    return machine if isinstance(machine, dict) else None


def _print_probes(results: Path, other: Path) -> None:
    """The machine's own drift between the two runs, bench by bench (not judged): the probes
    each JSON took before and at the end of its run (``benchkit.machine_probe``), and a
    warning for a run that began on a machine that never got quiet."""
    for name in BENCHES:
        mine, theirs = _machine(results, name), _machine(other, name)
        if mine is None or theirs is None:
            continue
        for when, key in (("before", "probe_at_start"), ("at the end of", "probe")):
            a_probe, b_probe = mine.get(key), theirs.get(key)
            if not isinstance(a_probe, dict) or not isinstance(b_probe, dict):
                continue
            moved = []
            for field in ("cpu_ms", "fsync_ms", "query_us"):
                a, b = a_probe.get(field), b_probe.get(field)
                if a and b:
                    moved.append(f"{field} {a / b - 1:+.1%}")
            print(f"machine probe {when} {name}, this run vs the other: {', '.join(moved)}")
        for run, machine in (("this run", mine), ("the other", theirs)):
            quiet = machine.get("quiet_at_start")
            if isinstance(quiet, dict) and not quiet.get("quiet"):
                print(f"  {name} in {run} began on a busy machine: {quiet.get('busiest')}")


def splice(readme: str, new_table: str) -> str:
    """``readme`` with the text between the markers replaced by ``new_table``."""
    try:
        before, rest = readme.split(START + "\n", 1)
        _, after = rest.split(END, 1)
    except ValueError:
        raise SystemExit(f"the README has no {START} … {END} block to fill") from None
    return f"{before}{START}\n{new_table}\n{END}{after}"


def main() -> None:
    """Write (or with --check, compare) the README's performance table."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("bench/results"))
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 if stale")
    parser.add_argument(
        "--compare",
        type=Path,
        metavar="OTHER_RESULTS",
        help="print each figure beside another run's (a results directory); exit 1 when one "
        f"differs by more than {REPRODUCE * 100:.0f} %%",  # argparse %-formats help
    )
    args = parser.parse_args()
    if args.compare is not None:
        raise SystemExit(0 if compare(args.results, args.compare) else 1)
    readme = args.readme.read_text()
    wanted = splice(readme, table(args.results))
    if args.check:
        if wanted != readme:
            print(
                f"{args.readme}'s performance table is not the one {args.results}/*.json give; "
                "run `python bench/readme_table.py` and commit the result.",
                file=sys.stderr,
            )
            raise SystemExit(1)
        return
    args.readme.write_text(wanted)
    print(f"wrote the performance table into {args.readme}")


if __name__ == "__main__":
    main()
