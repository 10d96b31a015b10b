"""Asking for a store's database: record the provisioning job, then hand it over.

The order is the point: the job is committed in master before any dispatcher hears of it, so
a worker never looks for a job that is not there yet, and a message lost on the way (or a
queue that cannot be reached) only delays the job: the recovery sweep hands it over again.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from tenantry.db.master.models import DatabaseServer, ProvisioningMode
from tenantry.db.urls import parse_url
from tenantry.operations.dispatch import Dispatcher
from tenantry.runtime import Platform
from tenantry.services import placement, provisioning, servers, stores
from tenantry.services.permissions import ensure_may_write


@dataclass(frozen=True)
class Requested:
    """The job that was recorded and handed over."""

    job_id: uuid.UUID
    status: str
    store_id: uuid.UUID
    slug: str


def request(
    platform: Platform,
    dispatcher: Dispatcher,
    store: str | uuid.UUID,
    *,
    mode: ProvisioningMode,
    server: str | None = None,
    url: str | None = None,
    actor: str,
    url_field: str = "url",
) -> Requested:
    """Record a provisioning job for ``store`` (slug or id) and hand it to ``dispatcher``.

    ``create_new`` makes a database on registered ``server``; without one, on the server
    placement picks (:mod:`tenantry.services.placement`), or a SQLite file in the data dir when
    no server is registered or ``server`` is ``sqlite``. ``connect_existing`` uses the
    database at ``url`` (named ``url_field`` in errors). A read-only principal is refused
    before anything is looked at or recorded; a refused placement records nothing.
    """
    ensure_may_write("provision a store")
    with platform.writer_sessions.begin() as session:
        if mode is ProvisioningMode.CREATE_NEW:
            # First in the transaction: see placement's module doc (race safety).
            registered = placement.lock_servers(session)
        # Locked: two requests for one store take turns, and the second sees the first's job.
        found = stores.get_store(session, store, lock=True)
        provisioning.refuse_provisioned(session, found)  # before placement's reasons
        chosen: DatabaseServer | None = None
        if mode is not ProvisioningMode.CREATE_NEW:
            chosen = servers.get_server(session, server) if server else None
            if url:
                connected = parse_url(url, setting=url_field)
                placement.refuse_url_breaking_residency(
                    session, found, connected, doing="connect its database to"
                )
        elif server == placement.SQLITE:
            placement.refuse_breaking_residency(found, None, doing="place its database on")
        elif server:
            chosen = servers.get_server(session, server)
            placement.check_chosen(session, found, chosen)
        else:
            policy = placement.Policy(platform.settings.placement)
            chosen = placement.place(session, found, registered, policy)
        job = provisioning.request_provisioning(
            session,
            platform.box,
            platform.settings,
            found,
            mode=mode,
            server=chosen,
            url=url,
            actor=actor,
            url_field=url_field,
        )
        requested = Requested(job.id, job.public_status, found.id, found.slug)
    dispatcher.enqueue_provision(requested.job_id)
    return requested
