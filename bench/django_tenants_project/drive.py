"""What bench/fleet_schemas.py measures of django-tenants, run inside the bench project, one
step at a time as the bench asks, so that its steps take turns with tenantry's on the same
machine moment.

    TENANTRY_BENCH_DJANGO_DB=postgresql://... python drive.py --tenants 100

The database (made empty by the bench) gets the public schema (``migrate_schemas --shared``),
``--tenants`` ``Client`` rows with a domain each and their schemas at ``dt_store`` 0001 (the
store schema and its initial data; ``migrate_schemas --tenant dt_store 0001``); then one JSON
line on stdout: ``setup_s``, the package versions and the multiprocessing executor's
processes (``TENANT_MULTIPROCESSING_MAX_PROCESSES``).

Then it reads commands on stdin, one per line, and answers each with one JSON line:

* ``apply EXECUTOR``: ``migrate_schemas --tenant`` applying 0002 (a nullable, indexed
  ``bench_note`` on ``products``) with that executor (``multiprocessing`` or ``standard``),
  checked in every schema: ``{"seconds": ..., "migrated": N}``;
* ``noop EXECUTOR``: the same with nothing to apply: ``{"seconds": ...}``;
* ``rollback``: every schema back to 0001 (not timed), checked;
* ``checkpoint``: ``os.sync()`` and ``CHECKPOINT``, so the next timing does not pay for the
  previous step's writes.

A step that fails answers ``{"error": "..."}``; end of input ends the process. Progress goes
to stderr. The timings start after Django's set-up, as tenantry's are taken inside one
process.
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


def step(command: str, n: int) -> dict[str, Any]:
    """Run one command line; its answer."""
    verb, *args = command.split()
    if verb in ("apply", "noop") and len(args) == 1 and args[0] in EXECUTORS:
        say(f"{verb} ({args[0]})")
        seconds = migrate(args[0])
        if verb == "noop":
            return {"seconds": seconds}
        if (done := with_note()) != n:
            raise RuntimeError(f"{args[0]} apply: {done}/{n} schemas have the new column")
        return {"seconds": seconds, "migrated": done}
    if verb == "rollback" and not args:
        say("rolling back to 0001")
        migrate("multiprocessing", "dt_store", "0001")
        if (left := with_note()) != 0:
            raise RuntimeError(f"rollback left {left} schemas at 0002")
        return {"done": True}
    if verb == "checkpoint" and not args:
        checkpoint()
        return {"done": True}
    raise ValueError(f"unknown command {command!r}")


def main() -> None:
    """Set up, then answer the bench's commands until its input ends."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tenants", type=int, default=100)
    args = parser.parse_args()
    n = args.tenants
    from importlib import metadata

    ready = {
        "setup_s": setup(n),
        "versions": {p: metadata.version(p) for p in ("django", "django-tenants")},
        "processes": settings.TENANT_MULTIPROCESSING_MAX_PROCESSES,
    }
    print(json.dumps(ready), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            answer = step(line.strip(), n)
        except Exception as exc:  # answered, so the bench reports it and cleans up
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
