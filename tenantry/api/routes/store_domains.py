"""A store's custom domains: claim a host, verify it, list and remove them."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, Field

from tenantry.api.deps import AdminDep, KeyDep, MasterDep, PlatformDep, visible_store
from tenantry.api.fields import RequestModel
from tenantry.db.master.models import StoreDomain
from tenantry.operations import domain_verify
from tenantry.services import domains

router = APIRouter(prefix="/stores/{store_ref}/domains", tags=["store domains"])


class DomainCreate(RequestModel):
    """A host the store is to be served on."""

    host: str = Field(min_length=1, max_length=260, description="e.g. shop.example.com")


class DomainOut(BaseModel):
    """A claimed host; it resolves to the store only once verified."""

    host: str
    verified: bool
    verified_at: datetime | None
    token: str
    how_to_verify: str


class VerificationOut(BaseModel):
    """What the verification found."""

    host: str
    verified: bool
    method: str | None
    detail: str


def _out(domain: StoreDomain) -> DomainOut:
    return DomainOut(
        host=domain.host,
        verified=domain.verified_at is not None,
        verified_at=domain.verified_at,
        token=domain.token,
        how_to_verify=domain_verify.instructions(domain.host, domain.token),
    )


@router.get("", response_model=list[DomainOut])
def list_domains(store_ref: str, master: MasterDep, key: KeyDep) -> list[DomainOut]:
    """The store's hosts, verified or not."""
    store = visible_store(master, key, store_ref)
    return [_out(d) for d in domains.list_domains(master, store)]


@router.post("", status_code=status.HTTP_201_CREATED, response_model=DomainOut)
def add_domain(store_ref: str, body: DomainCreate, master: MasterDep, key: AdminDep) -> DomainOut:
    """Claim a host for the store (422 for a malformed host, 409 if any store claimed it);
    publish its token as ``how_to_verify`` says, then verify it."""
    store = visible_store(master, key, store_ref)
    domain = domains.add_domain(master, store, body.host, actor=key.actor)
    out = _out(domain)
    master.commit()
    return out


@router.post("/{host}/verify", response_model=VerificationOut)
def verify_domain(
    store_ref: str, host: str, master: MasterDep, key: AdminDep, platform: PlatformDep
) -> VerificationOut:
    """Look for the host's published token (HTTP, then DNS TXT); ``verified`` says whether
    it was found, ``detail`` what was seen."""
    slug = visible_store(master, key, store_ref).slug
    master.rollback()  # the look-ups take seconds: hold no transaction meanwhile
    found = domain_verify.verify(platform, slug, host, actor=key.actor)
    return VerificationOut(
        host=found.host, verified=found.verified, method=found.method, detail=found.detail
    )


@router.delete("/{host}", status_code=status.HTTP_204_NO_CONTENT)
def remove_domain(store_ref: str, host: str, master: MasterDep, key: AdminDep) -> Response:
    """Forget the store's claim on a host."""
    store = visible_store(master, key, store_ref)
    domains.remove_domain(master, store, host, actor=key.actor)
    master.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
