"""Importing a shared database into one database per store, over HTTP (admin keys only).

``POST /imports/shared`` checks the whole source first (as ``tenantry import shared
--dry-run``): a plan with problems is refused with 422 before anything is written, a dry run
answers the plan. Otherwise the missing stores are created, one ``import`` operation per store
is recorded, and the imports run in this API process, in the background; the answer (202)
lists the operations to follow at ``/operations/{id}``. There the source URL is never stored
nor echoed: an import interrupted with the API process is resumed by sending the request again
(or by ``tenantry import shared`` with the same mapping). With ``queue: true`` each store's
import goes to the workers instead, as ``tenantry import shared --queue`` does (the source
URL kept sealed in master until the last store ends), and survives the API process.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, Field

from tenantry.api.deps import AdminDep, DispatcherDep, PlatformDep
from tenantry.api.fields import RequestModel, StrictBool
from tenantry.api.openapi import raises
from tenantry.db.urls import mask, parse_url
from tenantry.errors import InvalidInput
from tenantry.imports.mapping import parse_mapping
from tenantry.operations.import_queued import queue_import
from tenantry.operations.import_shared import SharedImport

router = APIRouter(prefix="/imports", tags=["imports"])


class SharedImportRequest(RequestModel):
    """What to import: the shared database, the mapping (the YAML file's content as JSON)."""

    url: str = Field(
        max_length=2048, description="The shared database (read only); never stored or shown."
    )
    mapping: dict[str, Any] = Field(description="The mapping: {stores: {...}, tables: {...}}.")
    stores: list[str] | None = Field(None, max_length=10_000, description="Only these slugs.")
    create_stores: StrictBool = False
    server: str | None = Field(None, max_length=63)
    concurrency: int = Field(
        2, ge=1, le=64, description="Stores imported at once by this API process (not queued)."
    )
    dry_run: StrictBool = False
    queue: StrictBool = Field(
        False, description="Hand each store's import to the workers (`tenantry worker`)."
    )


class ImportOperationOut(BaseModel):
    """One store's import operation."""

    store: str
    operation_id: uuid.UUID


class SharedImportOut(BaseModel):
    """The plan, and (unless a dry run) the operations that carry it out."""

    source: str
    dry_run: bool
    plan: dict[str, Any]
    operations: list[ImportOperationOut]


@router.post(
    "/shared",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SharedImportOut,
    responses={200: {"description": "The plan of a dry run."}},
)
@raises(422, 503)
def import_shared(
    body: SharedImportRequest,
    key: AdminDep,
    platform: PlatformDep,
    dispatcher: DispatcherDep,
    response: Response,
) -> SharedImportOut:
    """Check, then import a shared database's rows into each store's own database."""
    mapping = parse_mapping(body.mapping, origin="the mapping")
    source_url = parse_url(body.url, setting="url")
    if body.server and not body.create_stores:
        raise InvalidInput("server goes with create_stores (where new store databases go).")
    job = SharedImport(
        platform,
        source_url,
        mapping,
        key.actor,
        concurrency=body.concurrency,
        server=body.server,
    )
    started = False
    try:
        plan = job.plan(only=body.stores, create_stores=body.create_stores)
        if body.dry_run:
            response.status_code = status.HTTP_200_OK
            return SharedImportOut(
                source=mask(source_url), dry_run=True, plan=plan.as_dict(), operations=[]
            )
        if body.queue:
            operations = queue_import(job, plan)
            for operation_id in operations.values():
                dispatcher.enqueue_import(operation_id)
        else:
            operations = job.record(plan)

            def run() -> None:
                try:
                    job.run(plan, operations=operations)
                finally:
                    job.close()

            threading.Thread(target=run, name="import-shared", daemon=True).start()
            started = True
        return SharedImportOut(
            source=mask(source_url),
            dry_run=False,
            plan=plan.as_dict(),
            operations=[ImportOperationOut(store=s, operation_id=i) for s, i in operations.items()],
        )
    finally:
        if not started:
            job.close()
