"""Benchmark: one tenant-schema revision over N tenants that are schemas of one PostgreSQL
database, tenantry against django-tenants on equal terms.

    python bench/fleet_schemas.py [--tenants 100 [500 ...]] [--concurrency 4] [--repeat 7]
                                  [--out bench/results]

Needs django-tenants (``pip install -e '.[bench]'``). For each N, twice over the same schema
and revision shape as ``bench/fleet.py`` (the default store schema: every table and index, its
initial data; then a nullable, indexed column on ``products``):

* **tenantry**: a fresh installation (``bench/fleet.py``'s plug-in of the store schema, b002
  absent), TENANTRY_BENCH_POSTGRES_URL's server registered, and N stores provisioned the way
  ``provision --new --shared`` does (:func:`provision_shared_store`: one schema per store in a
  new shared database, its identity row, its Alembic version table, its tenant role and the
  database's pool login). Then b002 appears and, wall-clock: ``run_fleet`` to b002 with
  ``--concurrency`` threads (every outcome migrated), ``run_fleet`` again ``--repeat`` times
  (every outcome current; the median), ``verify_fleet`` (every check ok; the median of
  ``max(--repeat, 3)``).
* **django-tenants**: the project in ``bench/django_tenants_project/`` (the same tables,
  columns, indexes and initial data as Django models; migration 0002 adds the same column
  and index) on a new database: N ``Client`` tenants and their schemas at 0001, then
  ``migrate_schemas --tenant`` applying 0002 and ``--repeat`` runs with nothing to apply,
  with the multiprocessing executor (``TENANT_MULTIPROCESSING_MAX_PROCESSES`` =
  ``--concurrency``) on the fresh schemas, then with the standard executor (one process)
  after rolling 0002 back. It runs in a process of its own (``drive.py``), which does one
  step at a time as this bench asks, timed from inside it as tenantry's steps are (neither
  pays for its interpreter's start-up).

**In turns.** Both are set up before anything is timed; then tenantry's apply and
django-tenants' (multiprocessing) apply run back to back, ``--apply-rounds`` times (between
rounds, not timed, both go back to the revision before: django-tenants by migrating to 0001,
tenantry by b002's downgrade run as SQL in each schema), and the ``--repeat`` no-op runs
alternate between them; who goes first swaps each round. The host's speed moves by tens of
per cent over minutes (``run.machine`` records its probe before and after): measured in turns,
a change reaches both tools alike and the ratio holds, where two blocks a few minutes apart
each caught the machine at another speed. Each ratio is the median over the rounds of one
round's pair (one apply of each moved the ratio 18 % between two passes). The standard
executor runs last, for reference (no ratio). Prints a table and writes
``fleet_schemas.json``. Every database and role created is dropped at the end, whatever
happened, and the server's database and role lists are compared before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from benchkit import (
    PG_URL,
    ServerDatabases,
    changed,
    checkpoint,
    database_names,
    parallel,
    role_names,
    run_metadata,
    say,
    server_version,
    wait_until_quiet,
)
from fleet import (
    AFTER,
    OWNER,
    STORE_B002_COLUMN,
    STORE_B002_INDEX,
    _repeated,
    _sampled,
    installation,
    raw_floor,
    timed_fleet_run,
    verify_timing,
)
from rich.console import Console
from rich.table import Table
from sqlalchemy import select, text, update
from sqlalchemy.engine import URL

from tenantry.db import migrations
from tenantry.db.admin import create_database, dispose_server_engines, drop_database
from tenantry.db.engines import make_engine
from tenantry.db.master.models import IntegrationConfig, Store, TenantOutcome
from tenantry.db.schemas import SchemaSpec
from tenantry.db.shared_schemas import pool_login
from tenantry.db.urls import mask, parse_url
from tenantry.operations.fleet_record import RunReport
from tenantry.operations.provision_shared import provision_shared_store
from tenantry.runtime import Platform
from tenantry.services import servers, stores
from tenantry.services.fleet_migrate import MigrateOptions

DJANGO_PROJECT = Path(__file__).resolve().parent / "django_tenants_project"
SERVER = "bench-pg"
#: Stores provisioned at once: one (master is a SQLite file here; its writers would wait).
PROVISION_WORKERS = 1
#: What this bench names its databases and roles with (checked for leftovers at the end,
#: beside the whole lists, which other work on the server changes too).
OURS = ("tenantry_bench_fsch_", "tenantry_bench_djt_", "tsp_tenantry_bench_fsch_", "ts_bench_")

console = Console(width=160)


def _slug(i: int) -> str:
    return f"bench-{i:04d}"


# --------------------------------------------------------------------------- tenantry


def _provision(platform: Platform, target: str, i: int) -> None:
    """Store ``i`` created and provisioned into its own schema of ``target``'s database."""
    with platform.sessions.begin() as session:
        stores.create_store(session, slug=_slug(i), name=f"Bench store {i}", actor="cli:bench")
    provision_shared_store(platform, _slug(i), target, actor="cli:bench")


def _shared_configs(platform: Platform) -> list[IntegrationConfig]:
    """The connections master recorded for the shared-schema stores."""
    with platform.sessions() as session:
        configs = list(
            session.scalars(
                select(IntegrationConfig).where(IntegrationConfig.db_schema.isnot(None))
            )
        )
        session.expunge_all()
    return configs


def _roles(platform: Platform, database: str) -> list[str]:
    """The tenant roles master recorded for the shared stores, and the pool login."""
    configs = _shared_configs(platform)
    found = {str(c.config_data["role"]) for c in configs if c.config_data.get("role")}
    return [*sorted(found), pool_login(database)]


def _drop_shared(server: URL, database: str, roles: list[str]) -> None:
    """Drop the shared database, then its roles (their grants were in it)."""
    drop_database(server.set(database=database))
    engine = make_engine(server, pooled=False)
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for role in roles:
                conn.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
    finally:
        engine.dispose()


@dataclass
class TenantryFleet:
    """A fresh installation with ``n`` shared-schema stores at the revision before AFTER."""

    platform: Platform
    spec: SchemaSpec
    options: MigrateOptions
    n: int
    concurrency: int
    setup_s: float
    database: str
    before: str  # the revision the stores were provisioned at

    def tenants(self) -> tuple[list[URL], list[str]]:
        """Each store's database (the shared one, as the bench's server login) and schema."""
        schemas = sorted(str(c.db_schema) for c in _shared_configs(self.platform))
        if len(schemas) != self.n:
            raise RuntimeError(f"{len(schemas)} shared-schema stores in master, not {self.n}")
        return [parse_url(PG_URL).set(database=self.database)] * self.n, schemas

    def run(self, step: str) -> tuple[float, RunReport]:
        """One ``run_fleet`` to AFTER: ``tenantry_apply`` (every outcome migrated) or
        ``tenantry_noop`` (every outcome current)."""
        expected = TenantOutcome.MIGRATED if step == "tenantry_apply" else TenantOutcome.CURRENT
        return timed_fleet_run(
            self.platform, self.spec, self.options, self.concurrency, self.n, expected, step
        )

    def rollback(self) -> None:
        """Every schema back at the revision before b002 (its downgrade, as SQL: tenantry
        never runs downgrades), and master told; not timed."""
        urls, schemas = self.tenants()
        table = self.spec.version_table
        engine = make_engine(urls[0], pooled=False)
        try:
            with engine.begin() as conn:
                for schema in schemas:
                    conn.execute(text(f'DROP INDEX "{schema}".{STORE_B002_INDEX}'))
                    conn.execute(
                        text(f'ALTER TABLE "{schema}".products DROP COLUMN {STORE_B002_COLUMN}')
                    )
                    conn.execute(
                        text(f'UPDATE "{schema}".{table} SET version_num = :before'),
                        {"before": self.before},
                    )
        finally:
            engine.dispose()
        with self.platform.sessions.begin() as session:
            session.execute(update(Store).values(schema_revision=self.before))


@contextmanager
def tenantry_fleet(n: int, concurrency: int) -> Iterator[TenantryFleet]:
    """``n`` stores provisioned the way ``provision --new --shared`` does, b002 written; their
    shared database and roles dropped after, whatever happened."""
    server = parse_url(PG_URL)
    database = f"tenantry_bench_fsch_{uuid.uuid4().hex[:8]}"
    roles: list[str] = [pool_login(database)]
    with tempfile.TemporaryDirectory(prefix="tenantry-bench-fleet-schemas-") as tmp:
        try:
            with installation(Path(tmp), "store", with_b002=False) as inst:
                platform = inst.platform
                with platform.sessions.begin() as session:
                    servers.add_server(
                        session, platform.box, name=SERVER, admin_url=PG_URL, actor="cli:bench"
                    )
                target = f"{SERVER}/{database}"
                t0 = time.perf_counter()
                say(f"tenantry x{n}: provisioning the first store (creates {database})")
                _provision(platform, target, 0)
                try:
                    parallel(
                        f"tenantry: provisioning {n} shared-schema stores at {inst.before}",
                        range(1, n),
                        lambda i: _provision(platform, target, i),
                        PROVISION_WORKERS,
                    )
                finally:
                    roles = _roles(platform, database)
                setup_s = time.perf_counter() - t0
                inst.write_b002()
                after = inst.spec(with_note=True)
                if migrations.head(after) != AFTER:
                    raise RuntimeError(f"the plug-in's head is {migrations.head(after)}")
                options = MigrateOptions(goal=AFTER, acting_app=OWNER, owner=OWNER)
                try:
                    yield TenantryFleet(
                        platform, after, options, n, concurrency, setup_s, database, inst.before
                    )
                finally:
                    platform.router.dispose_all()
        finally:
            say(f"tenantry x{n}: dropping {database} and {len(roles)} roles")
            dispose_server_engines()
            _drop_shared(server, database, roles)


# --------------------------------------------------------------------------- django-tenants


class DjangoTenants:
    """``drive.py`` of the django-tenants project on a new database, in a process of its own,
    driven one step at a time (one JSON line per step)."""

    def __init__(self, proc: subprocess.Popen[str], ready: dict[str, Any]) -> None:
        self.proc = proc
        self.setup_s = float(ready["setup_s"])
        self.versions: dict[str, str] = ready["versions"]
        self.processes = int(ready["processes"])

    def step(self, command: str) -> dict[str, Any]:
        """Send ``command``; its answer (a failed step raises with drive.py's message)."""
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"drive.py ended (exit {self.proc.wait()}) at {command!r}")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"drive.py {command!r}: {answer['error']}")
        return answer


@contextmanager
def django_tenants(n: int, concurrency: int) -> Iterator[DjangoTenants]:
    """drive.py set up over ``n`` tenants; its database dropped after, whatever happened."""
    server = parse_url(PG_URL)
    url = server.set(database=f"tenantry_bench_djt_{uuid.uuid4().hex[:8]}")
    create_database(url)
    env = os.environ | {
        "DJANGO_SETTINGS_MODULE": "benchsite.settings",
        "TENANTRY_BENCH_DJANGO_DB": url.render_as_string(hide_password=False).replace(
            "postgresql+psycopg://", "postgresql://"
        ),
        "TENANTRY_BENCH_DJANGO_PROCESSES": str(concurrency),
    }
    try:
        say(f"django-tenants x{n}: drive.py on {mask(url)}")
        with subprocess.Popen(
            [sys.executable, "drive.py", "--tenants", str(n)],
            cwd=DJANGO_PROJECT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        ) as proc:
            try:
                assert proc.stdout is not None
                ready = proc.stdout.readline()
                if not ready:
                    raise RuntimeError(f"drive.py exited {proc.wait()} (its errors are above)")
                yield DjangoTenants(proc, json.loads(ready))
            finally:
                if proc.stdin is not None:
                    proc.stdin.close()  # its end of input: it exits
                proc.wait(timeout=60)
    finally:
        drop_database(url)


# --------------------------------------------------------------------------- both, in turns


def bench_both(n: int, concurrency: int, repeat: int, apply_rounds: int) -> dict[str, Any]:
    """Both tools set up over ``n`` tenants, then measured in turns on the same server: the
    applies back to back ``apply_rounds`` times, both rolled back between rounds, and the
    no-op runs alternating (who goes first swaps each round), so a change of the machine's
    speed over the run reaches both alike."""
    server = parse_url(PG_URL)
    with tenantry_fleet(n, concurrency) as ours, django_tenants(n, concurrency) as theirs:
        steps: dict[str, Any] = {}
        applied: list[tuple[float, RunReport]] = []
        dt_applies: list[dict[str, Any]] = []
        for rnd in range(apply_rounds):
            if rnd:
                say(f"x{n}: both back at the revision before ({rnd + 1}/{apply_rounds})")
                ours.rollback()
                theirs.step("rollback")
            for who in ("ours", "theirs") if rnd % 2 == 0 else ("theirs", "ours"):
                checkpoint(server)
                say(f"x{n}: {who} apply ({rnd + 1}/{apply_rounds})")
                if who == "ours":
                    applied.append(ours.run("tenantry_apply"))
                else:
                    dt_applies.append(theirs.step("apply multiprocessing"))
        theirs.step("checkpoint")
        ours_noops: list[tuple[float, RunReport]] = []
        dt_noops: list[float] = []
        for rep in range(repeat):
            turns = ("ours", "theirs") if rep % 2 == 0 else ("theirs", "ours")
            for who in turns:
                say(f"x{n}: {who} no-op ({rep + 1}/{repeat})")
                if who == "ours":
                    ours_noops.append(ours.run("tenantry_noop"))
                else:
                    dt_noops.append(float(theirs.step("noop multiprocessing")["seconds"]))
        steps["tenantry_apply"] = _repeated(applied, n)
        steps["tenantry_noop"] = _repeated(ours_noops, n)
        urls, schemas = ours.tenants()
        steps["verify"] = verify_timing(
            ours.platform,
            ours.spec,
            n,
            concurrency,
            repeat,
            f"tenantry x{n}",
            partial(raw_floor, urls, concurrency, schemas),
        )
        steps |= _dt_steps("multiprocessing", dt_applies, dt_noops, theirs.processes, n)
        # The standard executor (one process), after rolling back: for reference, no ratio.
        theirs.step("rollback")
        theirs.step("checkpoint")
        standard = theirs.step("apply standard")
        theirs.step("checkpoint")
        std_noops = [float(theirs.step("noop standard")["seconds"]) for _ in range(repeat)]
        steps |= _dt_steps("standard", [standard], std_noops, 1, n)
        return {
            "setup_s": {"tenantry": ours.setup_s, "django_tenants": theirs.setup_s},
            "versions": theirs.versions,
            "steps": steps,
        }


def _dt_steps(
    executor: str, applied: list[dict[str, Any]], noops: list[float], processes: int, n: int
) -> dict[str, Any]:
    """django-tenants' apply and no-op steps with ``executor``, as the JSON holds them."""
    both = {"processes": processes}
    return {
        f"dt_{executor}_apply": _sampled([float(a["seconds"]) for a in applied], n)
        | both
        | {"migrated": min(int(a["migrated"]) for a in applied)},
        f"dt_{executor}_noop": _sampled(noops, n) | both,
    }


# --------------------------------------------------------------------------- report


def _ours(server: URL) -> list[str]:
    """Databases and roles named like this bench's still on the server (said when any)."""

    def mine(name: str) -> bool:
        return name.startswith(OURS)

    found = sorted([*(database_names(server, mine) or []), *(role_names(server) or [])])
    left = [name for name in found if mine(name)]
    say(f"[red]left behind by this bench: {left}[/]" if left else "this bench left nothing behind")
    return left


STEP_LABELS = {
    "tenantry_apply": "tenantry apply (run_fleet, c={c})",
    "tenantry_noop": "tenantry no-op (run_fleet, c={c})",
    "verify": "tenantry verify (verify_fleet, c={c})",
    "dt_multiprocessing_apply": "django-tenants apply (migrate_schemas, multiprocessing, c={c})",
    "dt_multiprocessing_noop": "django-tenants no-op (migrate_schemas, multiprocessing, c={c})",
    "dt_standard_apply": "django-tenants apply (migrate_schemas, standard executor)",
    "dt_standard_noop": "django-tenants no-op (migrate_schemas, standard executor)",
}


def _ratios(steps: dict[str, Any]) -> dict[str, float]:
    """tenantry's time over django-tenants' multiprocessing executor's, per step: the median
    over the rounds of one round's pair (both ran in turns)."""
    return {
        what: statistics.median(
            ours / theirs
            for ours, theirs in zip(
                steps[f"tenantry_{what}"]["runs_s"],
                steps[f"dt_multiprocessing_{what}"]["runs_s"],
                strict=True,
            )
        )
        for what in ("apply", "noop")
    }


def _seconds_text(values: dict[str, Any]) -> str:
    runs = values.get("runs_s") or []
    shown = f"{values['seconds']:.2f}"
    return f"{shown} ({min(runs):.2f}-{max(runs):.2f})" if len(runs) > 1 else shown


def _print(results: list[dict[str, Any]]) -> None:
    table = Table(
        title="schema per tenant: one revision (a nullable, indexed column) over N schemas"
    )
    for col in ("tenants", "step", "seconds", "ms/tenant", "tenantry/django-tenants"):
        table.add_column(col, justify="left" if col == "step" else "right")
    for r in results:
        if "error" in r:
            table.add_row(str(r["tenants"]), f"[red]error[/] {r['error']}", "", "", "")
            table.add_section()
            continue
        ratios = r["tenantry_over_django_tenants"]
        for step, values in r["steps"].items():
            ratio = {"tenantry_apply": ratios["apply"], "tenantry_noop": ratios["noop"]}.get(step)
            table.add_row(
                str(r["tenants"]),
                STEP_LABELS[step].format(c=r["concurrency"]),
                _seconds_text(values),
                f"{values['ms_per_tenant']:.1f}",
                f"{ratio:.2f}x" if ratio is not None else "",
            )
        table.add_section()
    console.print(table)
    console.print(
        "[dim]Both on the default store schema (15 tables, their indexes, initial data) in one "
        "schema per tenant of one PostgreSQL database; the same column and index added. "
        "tenantry: identity and instance check, migration lock, checksums, outcomes recorded "
        "in master. The ratio is tenantry's time over django-tenants' with the same "
        "concurrency (multiprocessing executor); below 1: tenantry is faster.[/]"
    )


def main() -> None:
    """Run both tools at each N, print a table and write the JSON results."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tenants", type=int, nargs="+", default=[100])
    parser.add_argument(
        "--concurrency",
        type=int,
        default=4,
        help="run_fleet's threads and django-tenants' multiprocessing processes",
    )
    # Seven: a no-op over 100 schemas takes a tenth of a second, and the median of three such
    # short runs moved by 20 % between passes.
    parser.add_argument("--repeat", type=int, default=7, help="no-op runs; the median is shown")
    # Three: one apply of each moved the ratio 18 % between two passes.
    parser.add_argument(
        "--apply-rounds", type=int, default=3, help="applies per tool, in turns; the median"
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    wait_until_quiet()
    if (
        any(n < 1 for n in args.tenants)
        or min(args.concurrency, args.repeat, args.apply_rounds) < 1
    ):
        parser.error("--tenants, --concurrency, --repeat and --apply-rounds must be at least 1")
    try:
        import django_tenants  # noqa: F401
    except ImportError:
        parser.exit(2, "django-tenants is not installed: pip install -e '.[bench]'\n")
    server = parse_url(PG_URL)
    # Taken before the runs: the commit measured, even if HEAD moves while they last.
    run = run_metadata(postgresql=server_version(server))
    watch = ServerDatabases(server)
    results: list[dict[str, Any]] = []
    load_start = os.getloadavg()
    try:
        for n in args.tenants:
            try:
                both = bench_both(n, args.concurrency, args.repeat, args.apply_rounds)
            except Exception as exc:  # report it, run the other N
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                error = f"{type(exc).__name__}: {first}"
                console.print(f"[red]x{n} failed:[/] {error}")
                results.append({"tenants": n, "error": error})
                continue
            steps = both["steps"]
            results.append(
                {
                    "kind": "schemas",
                    "tenants": n,
                    "concurrency": args.concurrency,
                    "setup_s": both["setup_s"],
                    "steps": steps,
                    "tenantry_over_django_tenants": _ratios(steps),
                    "django_versions": both["versions"],
                    "interleaved": True,
                }
            )
    except KeyboardInterrupt:
        console.print("[yellow]interrupted; the databases and roles created were dropped.[/]")
        raise SystemExit(130) from None
    databases = watch.report()
    databases["ours_left_behind"] = _ours(server)
    _print(results)
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / "fleet_schemas.json"
    out.write_text(
        json.dumps(
            {
                "run": run,
                "machine": {
                    "cpus": os.cpu_count(),
                    # Other work on the machine skews the timings: the load before and after.
                    "loadavg_start": load_start,
                    "loadavg_end": os.getloadavg(),
                },
                "config": {
                    "tenants": args.tenants,
                    "concurrency": args.concurrency,
                    "repeat": args.repeat,
                    "apply_rounds": args.apply_rounds,
                    "postgres": mask(server),
                },
                "results": results,
                "server_databases": databases,
            },
            indent=2,
            default=str,
        )
        + "\n"
    )
    console.print(f"wrote {out}")
    raise SystemExit(1 if changed(databases) or any("error" in r for r in results) else 0)


if __name__ == "__main__":
    main()
