"""Doctor checks of the databases: master and billing connect, are what they say they are and
at head; registered servers answer; the fleet is at head; TLS where required; stale templates;
spare database pools."""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy.engine import URL

from tenantry.db import migrations
from tenantry.db.builder import template_name
from tenantry.db.engines import connect
from tenantry.db.identity import guard
from tenantry.db.schemas import SchemaSpec, billing_schema, master_schema
from tenantry.db.tls import MYSQL_HINT, PG_HINT, REQUIRE_TLS_ENV, tls_required, uses_tls
from tenantry.db.urls import backend_of, mask
from tenantry.errors import TenantryError
from tenantry.observability.doctor import Check, DoctorContext, Status, ok
from tenantry.services import spares, templates
from tenantry.services.connections import server_url
from tenantry.services.fleet_status import fleet_status
from tenantry.services.servers import check_server, list_servers

ROLES: dict[str, SchemaSpec] = {}


def _spec(role: str) -> SchemaSpec:
    if role not in ROLES:
        ROLES[role] = master_schema() if role == "master" else billing_schema()
    return ROLES[role]


def _url(context: DoctorContext, role: str) -> URL:
    settings = context.settings
    return settings.master_url if role == "master" else settings.billing_url


def connections(context: DoctorContext) -> Iterator[Check]:
    """Master and billing answer (their URLs parsed and connected once)."""
    for role in ("master", "billing"):
        db = context.database(role)
        name = f"{role} connects"
        if db.reachable:
            yield ok(name, f"{mask(_url(context, role))} answers")
        else:
            yield Check(
                name,
                Status.CRITICAL,
                db.problem or "unreachable",
                f"Check DATABASE_URL{'' if role == 'master' else '_BILLING'} and that the "
                "server runs; `tenantry init` creates missing databases.",
            )


def identities(context: DoctorContext) -> Iterator[Check]:
    """Each database says it is its role's (the identity guard), and is at head."""
    for role in ("master", "billing"):
        spec = _spec(role)
        db = context.database(role)
        if db.engine is None:  # the other role's checks still run
            yield Check(
                f"{role} identity",
                Status.CRITICAL,
                f"not checked: the {role} database is unreachable ({db.problem})",
            )
            continue
        engine = db.engine
        where = mask(_url(context, role))
        try:
            with connect(engine) as conn:
                identity = guard(conn, spec, where=where)
                current = migrations.current(conn, spec)
        except TenantryError as exc:
            yield Check(f"{role} identity", Status.CRITICAL, exc.message, exc.hint)
            continue
        if identity is None:
            yield Check(
                f"{role} identity",
                Status.CRITICAL,
                f"{where} is empty: no tenantry identity, no tables",
                "tenantry init",
            )
            continue
        yield ok(f"{role} identity", identity.describe())
        yield _revision(role, spec, current)


def _revision(role: str, spec: SchemaSpec, current: str | None) -> Check:
    name = f"{role} migrations"
    head = migrations.head(spec)
    if current == head:
        return ok(name, f"at head ({head})")
    if current is not None and not migrations.known(spec, current):
        return Check(
            name,
            Status.CRITICAL,
            f"at {current}, a revision this code does not know (head {head})",
            "Upgrade tenantry to the version that migrated it.",
        )
    pending = len(migrations.between(spec, current, head))
    return Check(
        name,
        Status.CRITICAL,
        f"at {current or 'base'}, head is {head}: {pending} migration(s) pending",
        f"tenantry db migrate --role {role}",
    )


def servers(context: DoctorContext) -> Iterator[Check]:
    """Every active registered server answers with its admin login."""
    sessions = context.sessions()  # master first: without it nothing here can run
    box = context.secret_box()
    with sessions() as session:
        registered = [s for s in list_servers(session) if s.is_active]
    if not registered:
        yield ok("servers connect", "no database server registered")
        return
    for server in registered:
        result = check_server(box, server)
        if result.ok:
            yield ok(f"server {server.name}", f"{result.url} answers ({result.latency_ms:.0f} ms)")
        else:
            context.down_servers.add(server.name)
            yield Check(
                f"server {server.name}",
                Status.CRITICAL,
                f"{result.url}: {result.error}",
                f"tenantry servers check {server.name}",
            )


#: Stores the fleet check reads to name the first lagging and failed ones.
NAMED = 50


def fleet(context: DoctorContext) -> Iterator[Check]:
    """Tenant databases at head (master's record): lagging ones warn, failed ones are critical
    (whole counts; the first stores of each named)."""
    spec = context.tenant_spec()
    with context.sessions()() as session:
        status = fleet_status(session, spec, limit=NAMED)
    if status.failed_total:
        shown = ", ".join(f"{f['slug']} ({f['status']})" for f in status.failed[:5])
        more = status.failed_total - len(status.failed[:5])
        yield Check(
            "tenant migrations failed",
            Status.CRITICAL,
            f"{status.failed_total} tenant(s) whose last migration failed: {shown}"
            + (f" and {more} more" if more > 0 else ""),
            "tenantry fleet status (read each error), fix it, then tenantry fleet migrate",
            status.last_run["id"] if status.last_run else None,
        )
    failed = {f["slug"] for f in status.failed}
    lagging = [s for s in status.lagging if s not in failed]
    if status.lagging_total > (len(status.lagging) - len(lagging)):
        behind = status.lagging_total - (len(status.lagging) - len(lagging))
        shown = ", ".join(lagging[:5]) + (f" and {behind - 5} more" if behind > 5 else "")
        yield Check(
            "tenant migrations",
            Status.WARNING,
            f"{behind} of {status.total} tenant(s) not at head {status.head}: {shown}",
            "tenantry fleet migrate",
        )
    elif not status.failed_total:
        yield ok("tenant migrations", f"{status.total} tenant(s) at head {status.head}")


def tls(context: DoctorContext) -> Iterator[Check]:
    """With ``TENANTRY_REQUIRE_TLS`` on, every configured server URL asks for TLS."""
    try:
        required = tls_required()
    except TenantryError as exc:
        yield Check("TLS", Status.CRITICAL, exc.message, exc.hint)
        return
    urls: list[tuple[str, URL]] = [
        ("DATABASE_URL", context.settings.master_url),
        ("DATABASE_URL_BILLING", context.settings.billing_url),
    ]
    if context.master.reachable and context.box is not None:
        with context.sessions()() as session:
            for server in list_servers(session):
                urls.append((f"server {server.name}", server_url(context.box, server)))
    servers_only = [(label, url) for label, url in urls if backend_of(url) != "sqlite"]
    plain = [(label, url) for label, url in servers_only if not uses_tls(url)]
    if not required:
        yield ok(
            "TLS",
            f"not required ({REQUIRE_TLS_ENV} off); "
            f"{len(servers_only) - len(plain)} of {len(servers_only)} server URL(s) use it",
        )
        return
    if not plain:
        yield ok("TLS", f"required; all {len(servers_only)} server URL(s) use it")
        return
    hints = {PG_HINT if backend_of(url) == "postgresql" else MYSQL_HINT for _, url in plain}
    yield Check(
        "TLS",
        Status.CRITICAL,
        f"{REQUIRE_TLS_ENV} is on but {len(plain)} URL(s) do not ask for TLS: "
        + ", ".join(f"{label} ({mask(url)})" for label, url in plain),
        " ".join(sorted(hints)),
    )


def stale_templates(context: DoctorContext) -> Iterator[Check]:
    """Template databases of older revisions, or left by interrupted builds."""
    sessions = context.sessions()  # master first: without it nothing here can run
    box = context.secret_box()
    with sessions() as session:
        found = templates.scan(
            session, box, context.settings, context.tenant_spec(), skip=context.down_servers
        )
    # A leftover with open connections is a build running now, not a problem.
    stale = [t for t in found.stale if t.prunable]
    if stale:
        shown = ", ".join(f"{t.where}/{t.name}" for t in stale[:5])
        more = f" and {len(stale) - 5} more" if len(stale) > 5 else ""
        yield Check(
            "stale templates",
            Status.WARNING,
            f"{len(stale)} stale template database(s): {shown}{more}",
            "tenantry servers prune-templates",
        )
    else:
        current = sum(1 for t in found.found if not t.stale)
        yield ok("stale templates", f"none ({current} current or other schemas' template(s))")


def spare_databases(context: DoctorContext) -> Iterator[Check]:
    """The spare database pools: how many are ready per pool, and stale ones (of an older
    schema revision) the next refill drops."""
    sessions = context.sessions()
    bound = context.settings.spare_databases
    template = template_name(context.tenant_spec())
    with sessions() as session:
        counts = spares.pools_counts(session, template)
        names = {s.id: s.name for s in list_servers(session)}
    if not counts:
        yield ok("spare databases", "off" if bound == 0 else f"none yet (bound {bound})")
        return
    pools = ", ".join(
        f"{'sqlite' if sid is None else names.get(sid, sid)}: {c.ready} ready"
        for sid, c in counts.items()
    )
    stale = sum(c.stale for c in counts.values())
    busy = sum(c.building for c in counts.values())
    detail = f"{pools} (bound {bound}); {stale} stale, {busy} being made or dropped"
    if stale:
        yield Check(
            "spare databases",
            Status.WARNING,
            detail,
            "Run a worker (`tenantry worker`): its scheduler's refill drops stale spares.",
        )
    else:
        yield ok("spare databases", detail)
