"""Deleting a store, and with ``drop_database`` the databases tenantry made for it.

Two steps, so that an adapter can show what will happen and ask before anything changes:
:func:`plan` reads, :func:`delete` acts. The databases are dropped first and the store is
removed only once that succeeded: a failed drop leaves the store (and the way to retry).
The deletion is an operation (kind ``store_delete``): listed by ``tenantry ops``, and
cancellable until its first drop.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import URL

from tenantry.db import admin, shared_schemas
from tenantry.db.master.models import OperationKind, ProgressUnit
from tenantry.db.urls import mask
from tenantry.operations.running import run_here
from tenantry.runtime import Platform
from tenantry.services import stores
from tenantry.services.connections import migrator_url
from tenantry.services.move_leftovers import KeptSource, drop_location, kept_sources
from tenantry.services.runtime_access import drop_store_logins


@dataclass(frozen=True)
class StoreDeletion:
    """What deleting one store will do: its database and the sources its moves kept."""

    slug: str
    store_id: uuid.UUID
    drop_database: bool
    url: URL | None
    kept: list[KeptSource]
    #: The tenant role of a shared-schema store (recorded with its connection).
    role: str | None = None

    @property
    def shown(self) -> str | None:
        """The store's database, password masked (None when it has none)."""
        return mask(self.url) if self.url is not None else None

    @property
    def what(self) -> str:
        """What the store's data lives in, as a person reads it: ``its database URL``, or
        ``its schema S of shared database URL`` (dropping it leaves the neighbours)."""
        if self.url is not None and (schema := shared_schemas.schema_of(self.url)) is not None:
            whole = shared_schemas.whole_database(self.url)
            return f"its schema {schema} of shared database {mask(whole)}"
        return f"its database {self.shown}"

    @property
    def doomed(self) -> list[URL]:
        """The kept sources that will be dropped: only with ``drop_database``, and only
        those tenantry created."""
        return [k.url for k in self.kept if k.droppable] if self.drop_database else []


def plan(platform: Platform, ref: str, *, drop_database: bool) -> StoreDeletion:
    """Check that store ``ref`` (slug or id) may be deleted (no job running, never a
    database tenantry did not create) and say what would go; nothing changes."""
    with platform.sessions() as session:
        store = stores.get_store(session, ref)
        checked = stores.plan_delete(session, store, drop_database=drop_database)
        url = (
            migrator_url(session, platform.box, checked.connection) if checked.connection else None
        )
        kept = kept_sources(session, platform.box, checked.store_id)
        role = None
        if checked.connection is not None and checked.connection.db_schema:
            role = str(checked.connection.config_data.get("role") or "") or None
    return StoreDeletion(checked.slug, checked.store_id, checked.drop_database, url, kept, role)


def delete(platform: Platform, deletion: StoreDeletion, *, actor: str) -> dict[str, Any]:
    """Drop what ``deletion`` drops, then remove the store; a report of what was done.
    Raises :class:`~tenantry.operations.running.Cancelled` when cancelled before a drop."""
    dropped = False
    logins_dropped: list[str] = []
    doomed = deletion.doomed
    with run_here(
        platform.sessions,
        platform.settings,
        OperationKind.STORE_DELETE,
        store_id=deletion.store_id,
        target=deletion.slug,
        requested_by=actor,
    ) as running:
        main = deletion.url if deletion.drop_database else None
        total = int(main is not None) + len(doomed)
        running.step("checking", current=0, total=total, unit=ProgressUnit.DATABASES)
        # Cancellable until the first drop: after it, stopping would leave a store without
        # its database.
        running.step("dropping databases")
        if main is not None and (schema := shared_schemas.schema_of(main)) is not None:
            # A store in one schema of a shared database: its schema and role go, the
            # database and the other stores' schemas stay.
            role = deletion.role or shared_schemas.tenant_role(deletion.slug, deletion.store_id)
            dropped = shared_schemas.drop_tenant_schema(
                shared_schemas.whole_database(main), str(main.database), schema, role
            )
            logins_dropped.append(role)
            running.step("dropping databases", current=1, cancellable=False)
        elif main is not None:
            dropped = admin.drop_database(main)
            logins_dropped += drop_store_logins(main, deletion.slug, deletion.store_id)
            running.step("dropping databases", current=1, cancellable=False)
        roles = {k.url: k.role for k in deletion.kept}
        for done, url in enumerate(doomed, start=int(main is not None) + 1):
            drop_location(url, roles.get(url))  # a kept schema source: its schema and role
            if shared_schemas.schema_of(url) is None:
                logins_dropped += drop_store_logins(url, deletion.slug, deletion.store_id)
            running.step("dropping databases", current=done, cancellable=False)
        running.step("removing the store", current=total, cancellable=False)
        with platform.writer_sessions.begin() as session:
            # Checked again in the deleting transaction: a job may have started since the plan.
            store = stores.get_store(session, deletion.store_id)
            final = stores.plan_delete(session, store, drop_database=deletion.drop_database)
            stores.delete_store(session, store, final, actor=actor)
    return {
        "deleted": deletion.slug,
        "store_id": str(deletion.store_id),
        "database": deletion.shown,
        "schema": shared_schemas.schema_of(deletion.url) if deletion.url is not None else None,
        "database_dropped": dropped,
        "logins_dropped": sorted(set(logins_dropped)),
        "kept_sources_dropped": [mask(u) for u in doomed],
        "kept_sources_left": [mask(k.url) for k in deletion.kept if k.url not in doomed],
    }
