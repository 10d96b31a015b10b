"""Placement: `provision --new` without a server picks the least-loaded registered server that
accepts the store, has room and matches its residency; a refusal records nothing.

The local PostgreSQL and MariaDB are registered under several names and regions (the same
physical servers). Jobs are handed to a dispatcher that only keeps them queued: a queued job
already counts on its server, which is what placement must see, and no database is made.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from tenantry.db.master.models import (
    DatabaseServer,
    ProvisioningJob,
    ProvisioningMode,
)
from tenantry.errors import Conflict
from tenantry.operations import provision_request, store_create
from tenantry.runtime import Platform
from tenantry.services import placement, servers, stores
from tenantry.services.server_loads import ServerLoad, server_loads
from tests.conftest import SERVER_URLS, require_server
from tests.dispatchers import KeptQueued
from tests.platform_fixtures import backend_platform, platform, settings

__all__ = ["backend_platform", "platform", "settings"]


def register(platform: Platform, name: str, backend: str = "postgresql", **labels: object) -> None:
    """Register the local ``backend`` server as ``name`` with placement ``labels``."""
    require_server(backend)
    with platform.writer_sessions.begin() as session:
        servers.add_server(
            session,
            platform.box,
            name=name,
            admin_url=SERVER_URLS[backend],
            actor="cli:test",
            **labels,  # type: ignore[arg-type]
        )


def new_store(
    platform: Platform, slug: str, region: str | None = None, tier: str | None = None
) -> str:
    store_create.create(
        platform, slug=slug, name=slug, plan="free", region=region, tier=tier, actor="cli:test"
    )
    return slug


def place(platform: Platform, slug: str, server: str | None = None) -> str | None:
    """Ask for a create-new database for ``slug``; the server its job went to (None: SQLite)."""
    requested = provision_request.request(
        platform,
        KeptQueued(),
        slug,
        mode=ProvisioningMode.CREATE_NEW,
        server=server,
        actor="cli:test",
    )
    with platform.sessions() as session:
        job = session.get(ProvisioningJob, requested.job_id)
        assert job is not None
        if job.database_server_id is None:
            return None
        found = session.get(DatabaseServer, job.database_server_id)
        assert found is not None
        return found.name


def jobs_of(session: Session, slug: str) -> int:
    store = stores.get_store(session, slug)
    query = select(func.count()).select_from(ProvisioningJob)
    return int(session.scalar(query.where(ProvisioningJob.store_id == store.id)) or 0)


def test_no_server_registered_means_a_sqlite_file(platform: Platform) -> None:
    assert place(platform, new_store(platform, "alone")) is None


def test_picks_the_least_loaded_server_of_the_store_region(platform: Platform) -> None:
    register(platform, "pg-eu-1", region="eu")
    register(platform, "my-eu-2", "mysql", region="eu")
    register(platform, "pg-us", region="us")
    first = place(platform, new_store(platform, "eu-a", "eu"))
    second = place(platform, new_store(platform, "eu-b", "eu"))
    third = place(platform, new_store(platform, "eu-c", "eu"))
    # Both eu servers empty: the first by name; then the other, which has fewer stores.
    assert [first, second] == ["my-eu-2", "pg-eu-1"]
    assert third == "my-eu-2"
    assert place(platform, new_store(platform, "us-a", "us")) == "pg-us"
    # A store without a requirement may go anywhere: my-eu-2 holds 2, pg-eu-1 and pg-us 1
    # each (the tie goes by name); then pg-us is the only one left with 1.
    assert place(platform, new_store(platform, "free-a")) == "pg-eu-1"
    assert place(platform, new_store(platform, "free-b")) == "pg-us"


def test_least_bytes_policy_ranks_by_measured_size(platform: Platform) -> None:
    register(platform, "pg-a", region="eu")
    register(platform, "pg-b", region="eu")
    assert place(platform, new_store(platform, "big", "eu")) == "pg-a"
    with platform.writer_sessions.begin() as session:
        stores.get_store(session, "big").storage_used_bytes = 10 * 1024**3
    assert place(platform, new_store(platform, "small-1", "eu")) == "pg-b"
    # One store each: the tie goes to the fewer bytes.
    assert place(platform, new_store(platform, "small-2", "eu")) == "pg-b"
    with platform.sessions() as session:
        loads = {
            load.server.name: (load.tenants, load.bytes)
            for load in server_loads(session, servers.list_servers(session))
        }
    assert loads == {"pg-a": (1, 10 * 1024**3), "pg-b": (2, 0)}
    assert place(platform, new_store(platform, "by-count", "eu")) == "pg-a"
    by_bytes = Platform.open(platform.settings.model_copy(update={"placement": "least-bytes"}))
    try:
        assert place(by_bytes, new_store(platform, "by-bytes", "eu")) == "pg-b"
    finally:
        by_bytes.close()


def test_full_and_not_accepting_servers_are_skipped(platform: Platform) -> None:
    register(platform, "pg-full", region="eu", max_tenants=1)
    register(platform, "pg-closed", region="eu", accepting=False)
    register(platform, "pg-bytes", region="eu", max_bytes=1000)
    register(platform, "pg-open", region="eu")
    assert place(platform, new_store(platform, "one", "eu")) == "pg-bytes"
    with platform.writer_sessions.begin() as session:
        stores.get_store(session, "one").storage_used_bytes = 1000  # pg-bytes is full now
    assert place(platform, new_store(platform, "two", "eu")) == "pg-full"
    # pg-full holds its one store, pg-bytes its 1000 bytes, pg-closed takes none.
    assert place(platform, new_store(platform, "three", "eu")) == "pg-open"
    assert place(platform, new_store(platform, "four", "eu")) == "pg-open"


def test_no_matching_server_is_a_clear_error_and_records_nothing(platform: Platform) -> None:
    register(platform, "pg-us", region="us")
    register(platform, "pg-eu", region="eu", accepting=False)
    slug = new_store(platform, "needs-eu", "eu")
    with pytest.raises(Conflict) as refused:
        place(platform, slug)
    message = refused.value.message
    assert "requires region eu" in message
    assert "pg-us: region us" in message
    assert "pg-eu: not accepting" in message
    assert "servers add NAME --url URL --region eu" in (refused.value.hint or "")
    with platform.sessions() as session:
        assert jobs_of(session, slug) == 0
        assert stores.get_store(session, slug).database_status == "provisioning"


def test_an_explicit_server_or_sqlite_breaking_residency_is_refused(platform: Platform) -> None:
    register(platform, "pg-us", region="us")
    register(platform, "pg-eu", region="eu", tier="dedicated")
    slug = new_store(platform, "eu-only", "eu", "dedicated")
    for wrong, why in (("pg-us", "region us"), ("sqlite", "has no region")):
        with pytest.raises(Conflict, match=why):
            place(platform, slug, server=wrong)
    register(platform, "pg-eu-std", region="eu", tier="standard")
    with pytest.raises(Conflict, match="tier standard, the store requires dedicated"):
        place(platform, slug, server="pg-eu-std")
    with platform.sessions() as session:
        assert jobs_of(session, slug) == 0
    assert place(platform, slug, server="pg-eu") == "pg-eu"
    # Without a requirement, --server sqlite still means a file even with servers registered.
    assert place(platform, new_store(platform, "anywhere"), server="sqlite") is None


def test_a_store_with_a_requirement_and_no_server_is_refused(platform: Platform) -> None:
    with pytest.raises(Conflict, match="no database server is registered"):
        place(platform, new_store(platform, "eu-lonely", "eu"))


def _slowed(pause: float) -> Callable[[Session, list[DatabaseServer]], list[ServerLoad]]:
    def slow(session: Session, found: list[DatabaseServer]) -> list[ServerLoad]:
        loads = server_loads(session, found)
        time.sleep(pause)  # without the lock, both requests would count the server empty
        return loads

    return slow


def test_two_provisions_never_both_take_the_last_slot(
    backend_platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    platform = backend_platform
    register(platform, "pg-one", region="eu", max_tenants=1)
    slugs = [new_store(platform, f"race-{i}", "eu") for i in range(2)]
    monkeypatch.setattr(placement, "server_loads", _slowed(0.5))
    outcomes: dict[str, str] = {}

    def provision(slug: str) -> None:
        try:
            outcomes[slug] = str(place(platform, slug))
        except Conflict as exc:
            outcomes[slug] = exc.message

    threads = [threading.Thread(target=provision, args=(slug,)) for slug in slugs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    placed = [slug for slug, outcome in outcomes.items() if outcome == "pg-one"]
    assert len(placed) == 1, outcomes
    (other,) = set(slugs) - set(placed)
    assert "full: 1 of 1 stores" in outcomes[other]
    with platform.sessions() as session:
        assert jobs_of(session, other) == 0
        (load,) = server_loads(session, [servers.get_server(session, "pg-one")])
        assert load.tenants == 1


def test_connecting_a_database_elsewhere_breaks_residency(platform: Platform) -> None:
    register(platform, "pg-eu", region="eu")
    register(platform, "my-us", "mysql", region="us")
    slug = new_store(platform, "eu-connect", "eu")

    def connect(url: str) -> None:
        provision_request.request(
            platform,
            KeptQueued(),
            slug,
            mode=ProvisioningMode.CONNECT_EXISTING,
            url=url,
            actor="cli:test",
        )

    mysql_db = SERVER_URLS["mysql"].rsplit("/", 1)[0] + "/theirs"
    with pytest.raises(Conflict, match=r"server 'my-us'.*region us, the store requires eu"):
        connect(mysql_db)
    with pytest.raises(Conflict, match="no registered server"):
        connect("sqlite:////tmp/theirs.db")
    with platform.sessions() as session:
        assert jobs_of(session, slug) == 0
    connect(SERVER_URLS["postgresql"].rsplit("/", 1)[0] + "/theirs")  # on pg-eu: queued
    with platform.sessions() as session:
        assert jobs_of(session, slug) == 1


def _load_reads(platform: Platform) -> Callable[[], int]:
    """How many statements that add up a server's load (its stores' measured bytes) master
    has run since this was called."""
    seen: list[str] = []

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        if "sum(stores.storage_used_bytes)" in statement:
            seen.append(statement)

    event.listen(platform.master_engine, "before_cursor_execute", record)
    return lambda: len(seen)


def test_an_unbounded_server_takes_stores_without_its_load_being_added_up(
    platform: Platform,
) -> None:
    """The load is a count over every store bound to a server (48 ms at 10,000 stores on
    SQLite, under the placement lock): a request for a server with no bound, named or the
    only one that fits, does not read it; once the server has a bound, it is read and kept."""
    register(platform, "pg-only", region="eu")
    register(platform, "pg-us", region="us")
    reads = _load_reads(platform)
    assert place(platform, new_store(platform, "named", "eu"), server="pg-only") == "pg-only"
    assert place(platform, new_store(platform, "placed", "eu")) == "pg-only"
    assert reads() == 0
    with platform.writer_sessions.begin() as session:
        servers.get_server(session, "pg-only").max_tenants = 2
    for slug, ask in (("refused-named", "pg-only"), ("refused-placed", None)):
        with pytest.raises(Conflict, match=r"pg-only.*full: 2 of 2 stores"):
            place(platform, new_store(platform, slug, "eu"), server=ask)
    assert reads() == 2
