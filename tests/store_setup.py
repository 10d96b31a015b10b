"""Setting up a store for a test: created in master and connected to an existing database by a
real provisioning run, as `tenantry provision SLUG --connect URL` does."""

from __future__ import annotations

import uuid

from sqlalchemy.engine import URL

from tenantry.db.master.models import ProvisioningMode
from tenantry.operations.provision import Provisioner
from tenantry.runtime import Platform
from tenantry.services import provisioning, stores


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
