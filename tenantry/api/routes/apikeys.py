"""API keys over HTTP (admin keys and signed-in users only): create (the key shown once),
list, revoke. A read-only principal can list them but not create or revoke any."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, Field

from tenantry.api.deps import AdminDep, MasterDep
from tenantry.api.fields import APP_ID_PATTERN, RequestModel, StrictBool
from tenantry.db.master.models import ApiKey
from tenantry.services import apikeys, stores

router = APIRouter(prefix="/api-keys", tags=["api keys"])


class KeyCreate(RequestModel):
    """A new key: ``admin`` for the platform, ``store`` for one store, ``app`` for one app."""

    scope: Literal["admin", "store", "app"]
    name: str = Field("", max_length=255)
    store: str | None = Field(None, max_length=63, description="The store (slug or id).")
    app_id: str | None = Field(None, pattern=APP_ID_PATTERN)
    read_only: StrictBool = Field(False, description="Reads what its scope reaches, no more.")


class KeyOut(BaseModel):
    """A key as listed (never its secret)."""

    prefix: str
    name: str
    scopes: list[str]
    read_only: bool
    store_id: uuid.UUID | None
    app_id: str | None
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None


class KeyCreated(KeyOut):
    """A key as created: ``key`` is shown this once and never stored."""

    key: str


def _out(key: ApiKey) -> KeyOut:
    return KeyOut(
        prefix=key.prefix,
        name=key.name,
        scopes=list(key.scopes),
        read_only=apikeys.is_read_only(key),
        store_id=key.store_id,
        app_id=key.app_id,
        created_at=key.created_at,
        last_used_at=key.last_used_at,
        expires_at=key.expires_at,
        revoked_at=key.revoked_at,
    )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=KeyCreated)
def create_key(body: KeyCreate, master: MasterDep, key: AdminDep) -> KeyCreated:
    """Create an API key; the response holds the key, shown this once."""
    target = stores.get_store(master, body.store) if body.store is not None else None
    new = apikeys.create_key(
        master,
        name=body.name,
        scope=apikeys.Scope(body.scope),
        store=target,
        app_id=body.app_id,
        read_only=body.read_only,
        actor=key.actor,
    )
    master.commit()
    return KeyCreated(**_out(new.key).model_dump(), key=new.plaintext)


@router.get("", response_model=list[KeyOut])
def list_keys(master: MasterDep, key: AdminDep) -> list[KeyOut]:
    """Every API key, oldest first (never a secret)."""
    return [_out(k) for k, _ in apikeys.list_keys(master)]


@router.delete("/{prefix}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_key(prefix: str, master: MasterDep, key: AdminDep) -> Response:
    """Revoke a key: it stops working at once."""
    apikeys.revoke_key(master, prefix, actor=key.actor)
    master.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
