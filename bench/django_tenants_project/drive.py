"""What bench/fleet_schemas.py measures of django-tenants, run inside the bench project.

    TENANTRY_BENCH_DJANGO_DB=postgresql://... python drive.py --tenants 100 --repeat 3

The database (made empty by the bench) gets the public schema (``migrate_schemas --shared``),
``--tenants`` ``Client`` rows with a domain each and their schemas at ``dt_store`` 0001 (the
store schema and its initial data; ``migrate_schemas --tenant dt_store 0001``). Then, per
executor (``multiprocessing`` with ``TENANT_MULTIPROCESSING_MAX_PROCESSES`` processes first, on
the fresh schemas; then ``standard``, after rolling 0002 back): wall-clock of
``migrate_schemas --tenant`` applying 0002 (a nullable, indexed ``bench_note`` on
``products``), checked in every schema, and of ``--repeat`` runs with nothing to apply. Prints
one JSON object on stdout; progress on stderr. The timings start after Django's set-up, as
tenantry's are taken inside one process.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchsite.settings")
django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection as django_connection  # noqa: E402
from dt_customers.models import Client, Domain  # noqa: E402

#: django-tenants' database wrapper (``set_schema_to_public`` is its own).
connection: Any = django_connection

PREFIX = "bench_"
EXECUTORS = ("multiprocessing", "standard")


def say(message: str) -> None:
    """A timestamped line on stderr."""
    print(f"{time.strftime('%H:%M:%S')} django-tenants: {message}", file=sys.stderr, flush=True)


def migrate(executor: str, *target: str) -> float:
    """``migrate_schemas --tenant [dt_store TARGET] --executor EXECUTOR``; seconds."""
    started = time.perf_counter()
    call_command(
        "migrate_schemas", *target, tenant=True, executor=executor, interactive=False, verbosity=0
    )
    return time.perf_counter() - started


def with_note() -> int:
    """How many tenant schemas have ``products.bench_note`` (and its index)."""
    connection.set_schema_to_public()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'products' "
            "AND indexname = 'ix_products_bench_note' AND schemaname LIKE %s",
            [PREFIX + "%"],
        )
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def checkpoint() -> None:
    """Flush the previous step's writes so the next timing does not pay for them."""
    os.sync()
    connection.set_schema_to_public()
    with connection.cursor() as cursor:
        cursor.execute("CHECKPOINT")


def setup(n: int) -> float:
    """The public schema, ``n`` tenants and their schemas at dt_store 0001; seconds."""
    started = time.perf_counter()
    say("public schema")
    call_command("migrate_schemas", shared=True, interactive=False, verbosity=0)
    say(f"{n} tenants at dt_store 0001")
    clients = Client.objects.bulk_create(
        [Client(schema_name=f"{PREFIX}{i:04d}", name=f"Bench store {i}") for i in range(n)]
    )
    Domain.objects.bulk_create(
        [Domain(domain=f"{c.schema_name}.bench.test", tenant=c, is_primary=True) for c in clients]
    )
    for client in clients:
        # What ``Client.create_schema`` runs before its migrate (which would go to the head).
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE SCHEMA "{client.schema_name}"')
    migrate("multiprocessing", "dt_store", "0001")
    if with_note() != 0:
        raise RuntimeError("the schemas are past 0001 after set-up")
    return time.perf_counter() - started


def main() -> None:
    """Set up, measure, print the JSON."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n = args.tenants
    result: dict[str, Any] = {"setup_s": setup(n), "executors": {}}
    processes = settings.TENANT_MULTIPROCESSING_MAX_PROCESSES
    for position, executor in enumerate(EXECUTORS):
        if position:  # back to 0001 for the next executor (not timed)
            say(f"rolling back to 0001 for {executor}")
            migrate("multiprocessing", "dt_store", "0001")
            if (left := with_note()) != 0:
                raise RuntimeError(f"rollback left {left} schemas at 0002")
        checkpoint()
        say(f"apply ({executor})")
        apply_s = migrate(executor)
        if (done := with_note()) != n:
            raise RuntimeError(f"{executor} apply: {done}/{n} schemas have the new column")
        checkpoint()
        noops = []
        for rep in range(args.repeat):
            say(f"no-op ({executor}, {rep + 1}/{args.repeat})")
            noops.append(migrate(executor))
        result["executors"][executor] = {
            "processes": processes if executor == "multiprocessing" else 1,
            "apply_s": apply_s,
            "noop_runs_s": noops,
            "migrated": done,
        }
    versions = {}
    for package in ("django", "django-tenants"):
        from importlib import metadata

        versions[package] = metadata.version(package)
    result["versions"] = versions
    print(json.dumps(result))


if __name__ == "__main__":
    main()
