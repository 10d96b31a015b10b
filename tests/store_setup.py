"""Setting up a store for a test: created in master and connected to an existing database by a
real provisioning run, as `tenantry provision SLUG --connect URL` does, or created with a queued
job that makes its database."""

from __future__ import annotations

import uuid

from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from tenantry.db.master.models import ProvisioningJob, ProvisioningMode
from tenantry.operations import provision_request
from tenantry.operations.dispatch import Dispatcher
from tenantry.operations.provision import Provisioner
from tenantry.operations.provision_request import Requested
from tenantry.runtime import Platform
from tenantry.services import placement, provisioning, servers, stores
from tenantry.settings import Settings


def connect_store(platform: Platform, slug: str, url: URL | str, *, name: str = "") -> uuid.UUID:
    """Create store ``slug`` and provision it onto the database at ``url`` (connect-existing);
    its id. Fails the test unless provisioning completes."""
    given = url if isinstance(url, str) else url.render_as_string(hide_password=False)
    with platform.sessions.begin() as session:
        store = stores.create_store(session, slug=slug, name=name or slug, actor="cli:test")
        store_id = store.id
        job = provisioning.request_provisioning(
            session,
            platform.box,
            platform.settings,
            store,
            mode=ProvisioningMode.CONNECT_EXISTING,
            url=given,
            actor="cli:test",
        )
    provisioner = Provisioner(
        platform.sessions, platform.box, platform.settings, platform.tenant_spec, "test"
    )
    assert provisioner.run(job.id) == "completed"
    return store_id


def request_create_new(
    session: Session, platform: Platform, settings: Settings, slug: str, server: str | None = None
) -> ProvisioningJob:
    """In ``session``: create store ``slug`` and queue a create-new job for it, its database
    on registered server ``server`` (None: a SQLite file in the data dir); the job."""
    store = stores.create_store(session, slug=slug, name=slug, actor="t")
    return provisioning.request_provisioning(
        session,
        platform.box,
        settings,
        store,
        mode=ProvisioningMode.CREATE_NEW,
        server=servers.get_server(session, server) if server is not None else None,
        actor="cli:test",
    )


def request_sqlite_file(platform: Platform, dispatcher: Dispatcher, slug: str) -> Requested:
    """Ask for store ``slug``'s database as a SQLite file in the data dir, through the
    operation the API and the CLI use; the job goes to ``dispatcher``."""
    return provision_request.request(
        platform,
        dispatcher,
        slug,
        mode=ProvisioningMode.CREATE_NEW,
        server=placement.SQLITE,
        actor="cli:test",
    )
