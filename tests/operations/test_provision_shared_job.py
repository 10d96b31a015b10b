"""Shared provisioning as a provisioning job: listed as an operation, killed with SIGKILL at
each step and resumed (by running the request again, or by a worker once the lease lapses)
to exactly one schema and role; a concurrent request refused; a failure leaving nothing."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid

import pytest
from sqlalchemy import func, select, text

from tenantry.db.identity import read_identity
from tenantry.db.master.models import (
    IntegrationConfig,
    Operation,
    OperationKind,
    ProvisioningMode,
    Store,
)
from tenantry.db.tenant.store.models import Category, Setting
from tenantry.errors import Conflict, OperationFailed
from tenantry.operations.dispatch import InProcessDispatcher
from tenantry.operations.provision import Provisioner
from tenantry.operations.provision_shared import (
    provision_shared_store,
    request_shared,
    shared_outcome,
)
from tenantry.runtime import Platform
from tenantry.services import provisioning, stores
from tenantry.services.connections import migrator_url
from tests.helpers import run_child
from tests.operations.test_provision_shared import admin_query, make_store
from tests.platform_fixtures import platform, settings
from tests.shared_schema_fixtures import SharedDb, shared_db
from tests.tenantry_fixtures import new_slug

__all__ = ["platform", "settings", "shared_db"]

LEASE_S = 0.5


def provision_shared_child(slug: str, target: str) -> None:
    """What ``tenantry provision SLUG --new --shared TARGET`` does (for :func:`run_child`)."""
    from tenantry.settings import load_settings

    platform = Platform.open(load_settings())
    provision_shared_store(platform, slug, target, actor="cli:test")


def _kill_child_at(platform: Platform, slug: str, target: str, point: str) -> None:
    env = {
        **os.environ,
        "TENANTRY_DATA_DIR": str(platform.settings.data_dir),
        "TENANTRY_FAILPOINTS": f"{point}=kill",
        "TENANTRY_JOB_LEASE_SECONDS": str(LEASE_S),
    }
    assert run_child(provision_shared_child, slug, target, env=env) == -signal.SIGKILL


def _job_of(platform: Platform, slug: str) -> uuid.UUID:
    with platform.sessions() as session:
        ((job, _),) = provisioning.list_jobs(session, store=stores.get_store(session, slug))
        assert job.mode == ProvisioningMode.CREATE_SHARED
        return job.id


def _check_provisioned_once(platform: Platform, shared: SharedDb, slug: str) -> None:
    """One schema and one role of the store's, its identity once, its seed once, one active
    connection, the job completed after two attempts and listed as an operation."""
    with platform.sessions() as session:
        store = stores.get_store(session, slug)
        prefix = f"t_{slug.replace('-', '_')}_"
        configs = session.scalars(
            select(IntegrationConfig).where(IntegrationConfig.store_id == store.id)
        ).all()
        assert [c.is_active for c in configs] == [True]
        assert store.database_status == "active"
        url = migrator_url(session, platform.box, configs[0])
        # As `tenantry ops` and GET /operations list it: one provisioning operation.
        operations = session.execute(
            select(Operation.__table__.c.status, Operation.__table__.c.attempts).where(
                Operation.kind == OperationKind.PROVISION, Operation.target == slug
            )
        ).all()
        assert [tuple(o) for o in operations] == [("succeeded", 2)]
    schemas = admin_query(
        shared.database, f"SELECT nspname FROM pg_namespace WHERE nspname LIKE '{prefix}%'"
    )
    assert [s[0] for s in schemas] == [configs[0].db_schema]
    roles = admin_query(
        shared.database, f"SELECT rolname FROM pg_roles WHERE rolname LIKE 'ts_{prefix[2:]}%'"
    )
    assert [r[0] for r in roles] == [configs[0].config_data["role"]]
    from tenantry.db.engines import make_engine

    engine = make_engine(url, pooled=False)
    try:
        with engine.connect() as conn:
            identity = read_identity(conn)
            assert identity is not None
            assert identity.instance_id == configs[0].instance_id
            assert conn.scalar(text("SELECT COUNT(*) FROM tenantry_identity")) == 1
            assert conn.scalar(select(func.count()).select_from(Category)) == 2
            assert conn.scalar(select(func.count()).select_from(Setting)) == 5
    finally:
        engine.dispose()
    # The store is served through its pool login and role.
    with platform.sessions() as master:
        engine = platform.router.engine(master, stores.get_store(master, slug))
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Category)) == 2


KILL_POINTS = [
    "provision.connect",
    "provision.create_schema",
    "provision.table.5",
    "provision.migrate",
    "provision.seed",
    "provision.grant",
    "provision.save_connection",
]


@pytest.mark.parametrize("point", KILL_POINTS)
def test_killed_then_run_again_resumes_to_one_schema_and_role(
    platform: Platform, shared_db: SharedDb, point: str
) -> None:
    slug = new_slug("kill")
    make_store(platform, slug)
    _kill_child_at(platform, slug, shared_db.target, point)
    with platform.sessions() as session:
        job = provisioning.get_job(session, _job_of(platform, slug))
        assert (job.status, job.mode) == ("running", ProvisioningMode.CREATE_SHARED)
    # The same request again: the dead process's job is taken over at once and completed.
    done = provision_shared_store(platform, slug, shared_db.target, actor="cli:test")
    assert done.database == shared_db.database
    _check_provisioned_once(platform, shared_db, slug)


def test_a_worker_takes_over_the_dead_lease(platform: Platform, shared_db: SharedDb) -> None:
    slug = new_slug("wkr")
    make_store(platform, slug)
    _kill_child_at(platform, slug, shared_db.target, "provision.seed")
    job_id = _job_of(platform, slug)
    time.sleep(LEASE_S + 0.3)
    with platform.sessions() as session:
        assert job_id in provisioning.recoverable_jobs(session)  # the worker's sweep finds it
    rescuer = Provisioner(
        platform.sessions, platform.box, platform.settings, platform.tenant_spec, "rescuer"
    )
    assert rescuer.run(job_id) == "completed"
    assert shared_outcome(platform, job_id).schema.startswith("t_wkr_")
    _check_provisioned_once(platform, shared_db, slug)


def test_a_concurrent_request_for_the_same_store_is_refused(
    platform: Platform, shared_db: SharedDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    slug = new_slug("race")
    make_store(platform, slug)
    monkeypatch.setenv("TENANTRY_FAILPOINTS", "provision.create_schema=sleep:3")
    outcome: list[object] = []
    first = threading.Thread(
        target=lambda: outcome.append(
            provision_shared_store(platform, slug, shared_db.target, actor="cli:test")
        )
    )
    first.start()
    try:
        deadline = time.monotonic() + 30
        while True:  # until the first request's job runs
            with platform.sessions() as session:
                jobs = provisioning.list_jobs(session, store=stores.get_store(session, slug))
                if jobs and jobs[0][0].status == "running":
                    job_id = jobs[0][0].id
                    break
            assert time.monotonic() < deadline
            time.sleep(0.05)
        runner = InProcessDispatcher(platform)
        with pytest.raises(Conflict, match=f"already has provisioning job {job_id}"):
            request_shared(platform, runner, slug, shared_db.target, actor="cli:test")
    finally:
        first.join()
    assert len(outcome) == 1
    with platform.sessions() as session:
        assert len(provisioning.list_jobs(session, store=stores.get_store(session, slug))) == 1
    prefix = f"t_{slug.replace('-', '_')}_"
    schemas = admin_query(
        shared_db.database, f"SELECT nspname FROM pg_namespace WHERE nspname LIKE '{prefix}%'"
    )
    assert len(schemas) == 1


def test_a_failure_drops_schema_and_role_and_gives_the_store_back(
    platform: Platform, shared_db: SharedDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    slug = new_slug("fail")
    make_store(platform, slug)
    neighbour = new_slug("nbr")
    make_store(platform, neighbour)
    provision_shared_store(platform, neighbour, shared_db.target, actor="cli:test")
    with platform.sessions() as session:
        before = stores.get_store(session, slug).database_status
    monkeypatch.setenv("TENANTRY_FAILPOINTS", "provision.grant=raise")
    with pytest.raises(OperationFailed, match=r"fail point provision\.grant"):
        provision_shared_store(platform, slug, shared_db.target, actor="cli:test")
    prefix = f"t_{slug.replace('-', '_')}_"
    assert (
        admin_query(
            shared_db.database, f"SELECT 1 FROM pg_namespace WHERE nspname LIKE '{prefix}%'"
        )
        == []
    )
    assert (
        admin_query(
            shared_db.database, f"SELECT 1 FROM pg_roles WHERE rolname LIKE 'ts_{prefix[2:]}%'"
        )
        == []
    )
    with platform.sessions() as session:
        store = session.scalar(select(Store).where(Store.slug == slug))
        assert store is not None
        assert store.database_status == before
        assert stores.active_connection(session, store) is None
        assert (
            session.scalars(
                select(IntegrationConfig).where(IntegrationConfig.store_id == store.id)
            ).all()
            == []
        )
        ((job, _),) = provisioning.list_jobs(session, store=store)
        assert job.status == "failed"
        assert job.secret_encrypted is None
    # The neighbour still works (the shared database and its pool login stay), and the
    # store can be provisioned again.
    monkeypatch.delenv("TENANTRY_FAILPOINTS")
    with platform.sessions() as master:
        engine = platform.router.engine(master, stores.get_store(master, neighbour))
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Category)) == 2
    done = provision_shared_store(platform, slug, shared_db.target, actor="cli:test")
    assert done.schema.startswith(prefix)


def test_two_stores_provisioned_at_once_into_a_new_database_agree_on_its_login(
    platform: Platform, shared_db: SharedDb
) -> None:
    slugs = [new_slug("pair"), new_slug("pair")]
    for slug in slugs:
        make_store(platform, slug)
    errors: list[BaseException] = []

    def provision(slug: str) -> None:
        try:
            provision_shared_store(platform, slug, shared_db.target, actor="cli:test")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=provision, args=(s,)) for s in slugs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for slug in slugs:  # both connect through the one pool login
        with platform.sessions() as master:
            engine = platform.router.engine(master, stores.get_store(master, slug))
        with engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(Category)) == 2


def test_a_cancelled_job_drops_what_it_made(
    platform: Platform, shared_db: SharedDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    slug = new_slug("cncl")
    make_store(platform, slug)
    with platform.sessions() as session:
        before = stores.get_store(session, slug).database_status
    monkeypatch.setenv("TENANTRY_FAILPOINTS", "provision.seed=sleep:2")
    runner = InProcessDispatcher(platform, background=True)
    requested = request_shared(platform, runner, slug, shared_db.target, actor="cli:test")
    deadline = time.monotonic() + 30
    while True:  # until it reaches the seed step (its schema and tables made)
        with platform.sessions() as session:
            if provisioning.get_job(session, requested.job_id).step == "seed":
                break
        assert time.monotonic() < deadline
        time.sleep(0.05)
    with platform.writer_sessions.begin() as session:
        job = provisioning.get_job(session, requested.job_id)
        provisioning.cancel_job(session, job, actor="cli:test")
    runner.join()
    prefix = f"t_{slug.replace('-', '_')}_"
    assert (
        admin_query(
            shared_db.database, f"SELECT 1 FROM pg_namespace WHERE nspname LIKE '{prefix}%'"
        )
        == []
    )
    with platform.sessions() as session:
        job = provisioning.get_job(session, requested.job_id)
        assert (job.status, job.operation_status) == ("cancelled", "cancelled")
        store = stores.get_store(session, slug)
        assert store.database_status == before
        assert stores.active_connection(session, store) is None
