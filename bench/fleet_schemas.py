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
  after rolling 0002 back. It runs in a process of its own (``drive.py``), timed from inside
  it as tenantry's steps are (neither pays for its interpreter's start-up).

The apply is measured once per tool and executor (each needs fresh tenants at the revision
before); the no-op runs ``--repeat`` times. Prints a table and writes ``fleet_schemas.json``.
Every database and role created is dropped at the end, whatever happened, and the server's
database and role lists are compared before and after.
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
    _repeated,
    _timing,
    installation,
    timed_fleet_run,
    verify_timing,
)
from rich.console import Console
from rich.table import Table
from sqlalchemy import select, text
from sqlalchemy.engine import URL

from tenantry.db import migrations
from tenantry.db.admin import create_database, dispose_server_engines, drop_database
from tenantry.db.engines import make_engine
from tenantry.db.master.models import IntegrationConfig, TenantOutcome
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


def _roles(platform: Platform, database: str) -> list[str]:
    """The tenant roles master recorded for the shared stores, and the pool login."""
    with platform.sessions() as session:
        configs = session.scalars(
            select(IntegrationConfig).where(IntegrationConfig.db_schema.isnot(None))
        )
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


def bench_tenantry(n: int, concurrency: int, repeat: int) -> dict[str, Any]:
    """``run_fleet`` (apply, no-op) and ``verify_fleet`` over ``n`` shared-schema stores."""
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
                checkpoint(server)
                setup_s = time.perf_counter() - t0
                inst.write_b002()
                after = inst.spec(with_note=True)
                if migrations.head(after) != AFTER:
                    raise RuntimeError(f"the plug-in's head is {migrations.head(after)}")
                options = MigrateOptions(goal=AFTER, acting_app=OWNER, owner=OWNER)
                runs: dict[str, list[tuple[float, RunReport]]] = {}
                for step, expected, times in (
                    ("tenantry_apply", TenantOutcome.MIGRATED, 1),
                    ("tenantry_noop", TenantOutcome.CURRENT, repeat),
                ):
                    for rep in range(times):
                        say(f"tenantry x{n}: {step.replace('_', ' ')} ({rep + 1}/{times})")
                        runs.setdefault(step, []).append(
                            timed_fleet_run(
                                platform, after, options, concurrency, n, expected, step
                            )
                        )
                    if step == "tenantry_apply":
                        checkpoint(server)
                steps = {step: _repeated(done, n) for step, done in runs.items()}
                steps["verify"] = verify_timing(
                    platform, after, n, concurrency, repeat, f"tenantry x{n}"
                )
                platform.router.dispose_all()
        finally:
            say(f"tenantry x{n}: dropping {database} and {len(roles)} roles")
            dispose_server_engines()
            _drop_shared(server, database, roles)
    return {"setup_s": setup_s, "steps": steps}


# --------------------------------------------------------------------------- django-tenants


def bench_django_tenants(n: int, concurrency: int, repeat: int) -> dict[str, Any]:
    """``drive.py`` of the django-tenants project over a new database; its steps."""
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
        done = subprocess.run(
            [sys.executable, "drive.py", "--tenants", str(n), "--repeat", str(repeat)],
            cwd=DJANGO_PROJECT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"drive.py exited {done.returncode} (its errors are above)")
        measured: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        drop_database(url)
    steps: dict[str, dict[str, Any]] = {}
    for executor, values in measured["executors"].items():
        noops = values["noop_runs_s"]
        steps[f"dt_{executor}_apply"] = _timing(values["apply_s"], n) | {
            "processes": values["processes"],
            "migrated": values["migrated"],
        }
        steps[f"dt_{executor}_noop"] = _timing(statistics.median(noops), n) | {
            "processes": values["processes"],
            "runs_s": [round(s, 3) for s in noops],
        }
    return {"setup_s": measured["setup_s"], "versions": measured["versions"], "steps": steps}


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
    """tenantry's time over django-tenants' multiprocessing executor's, per step."""
    return {
        what: steps[f"tenantry_{what}"]["seconds"] / steps[f"dt_multiprocessing_{what}"]["seconds"]
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
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    wait_until_quiet()
    if any(n < 1 for n in args.tenants) or min(args.concurrency, args.repeat) < 1:
        parser.error("--tenants, --concurrency and --repeat must be at least 1")
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
                ours = bench_tenantry(n, args.concurrency, args.repeat)
                theirs = bench_django_tenants(n, args.concurrency, args.repeat)
            except Exception as exc:  # report it, run the other N
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                error = f"{type(exc).__name__}: {first}"
                console.print(f"[red]x{n} failed:[/] {error}")
                results.append({"tenants": n, "error": error})
                continue
            steps = ours["steps"] | theirs["steps"]
            results.append(
                {
                    "kind": "schemas",
                    "tenants": n,
                    "concurrency": args.concurrency,
                    "setup_s": {"tenantry": ours["setup_s"], "django_tenants": theirs["setup_s"]},
                    "steps": steps,
                    "tenantry_over_django_tenants": _ratios(steps),
                    "django_versions": theirs["versions"],
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
