"""Claiming spares on every master backend: of provisioning jobs running at once, each spare
goes to at most one store (a row lock skipping those others hold on a server master, the one
writer on SQLite), and a job that finds none left takes the clone path."""

from __future__ import annotations

import threading
import uuid

from sqlalchemy import select

from tenantry.db.engines import make_engine
from tenantry.db.identity import read_identity
from tenantry.db.master.models import ProvisioningMode, SpareDatabase
from tenantry.operations import spare_pool
from tenantry.operations.provision import Provisioner
from tenantry.runtime import Platform
from tenantry.services import provisioning, stores
from tenantry.services.connections import tenant_url
from tests.platform_fixtures import backend_platform

__all__ = ["backend_platform"]

JOBS = 4
SPARES = 2


def test_concurrent_jobs_never_share_a_spare(backend_platform: Platform) -> None:
    platform = backend_platform
    bound = platform.settings.model_copy(update={"spare_databases": SPARES})
    spec = platform.tenant_spec
    spare_pool.refill(platform.sessions, platform.box, bound, spec)
    job_ids = []
    with platform.sessions.begin() as session:
        for i in range(JOBS):
            store = stores.create_store(
                session, slug=f"race-{i}-{uuid.uuid4().hex[:4]}", name=f"Race {i}", actor="t"
            )
            job = provisioning.request_provisioning(
                session,
                platform.box,
                bound,
                store,
                mode=ProvisioningMode.CREATE_NEW,
                actor="cli:test",
            )
            job_ids.append(job.id)
    outcomes: dict[uuid.UUID, str] = {}
    start = threading.Barrier(JOBS)

    def run(job_id: uuid.UUID) -> None:
        runner = Provisioner(platform.sessions, platform.box, bound, spec, f"w-{job_id.hex[:6]}")
        start.wait()
        outcomes[job_id] = runner.run(job_id)

    threads = [threading.Thread(target=run, args=(j,)) for j in job_ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(outcomes.values()) == {"completed"}

    with platform.sessions() as session:
        assert session.scalars(select(SpareDatabase)).all() == []  # both spares were taken
        jobs = [provisioning.get_job(session, j) for j in job_ids]
        claimed = [(j.destination or {}).get("spare") for j in jobs]
        claimed = [name for name in claimed if name]
        assert len(claimed) == SPARES
        assert len(set(claimed)) == SPARES  # no spare went to two stores
        instances = set()
        for job in jobs:
            assert job.store_id is not None
            store = stores.get_store(session, job.store_id)
            config = stores.active_connection(session, store)
            assert config is not None
            engine = make_engine(tenant_url(platform.box, config), pool_size=1)
            try:
                with engine.connect() as conn:
                    identity = read_identity(conn)
            finally:
                engine.dispose()
            assert identity is not None
            assert identity.role == "tenant"
            assert identity.instance_id == config.instance_id
            instances.add(identity.instance_id)
        assert len(instances) == JOBS
