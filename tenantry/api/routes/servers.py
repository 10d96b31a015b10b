"""Database servers (admin keys only): registration, placement labels and capacity, load."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from tenantry.api.audit_failures import audit_failures
from tenantry.api.deps import AdminDep, MasterDep, PlatformDep
from tenantry.api.server_schemas import ServerCreate, ServerOut, ServerUpdate
from tenantry.operations import spare_pool
from tenantry.services import placement_labels, server_pooler, servers
from tenantry.services.server_loads import ServerLoad, server_loads

router = APIRouter(tags=["database servers"])


def server_out(load: ServerLoad) -> ServerOut:
    """The API view of a server with its load."""
    base = ServerOut.model_validate(load.server, from_attributes=True)
    return base.model_copy(
        update={
            "tenants": load.tenants,
            "bytes": load.bytes,
            "tenant_headroom": load.tenant_headroom,
            "byte_headroom": load.byte_headroom,
            "pooled": load.server.pooler_url_encrypted is not None,
        }
    )


@router.post("/database-servers", status_code=status.HTTP_201_CREATED, response_model=ServerOut)
def add_server(
    body: ServerCreate, master: MasterDep, key: AdminDep, platform: PlatformDep
) -> ServerOut:
    """Register a PostgreSQL or MySQL/MariaDB server by its admin URL (stored encrypted),
    with the labels (region, tier) and capacity placement uses.

    The URL is validated and tenantry connects with it before saving: an invalid URL or an
    unreachable server is a 422 naming the problem, and nothing is saved.
    """
    with audit_failures(master, platform, key, "server.add", "database_server", body.name):
        pooler = (
            server_pooler.pooler_url_of(body.pooler_url, field="pooler_url")
            if body.pooler_url
            else None
        )
        server, _ = servers.add_server(
            master,
            platform.box,
            name=body.name,
            admin_url=body.url,
            notes=body.notes,
            region=body.region,
            tier=body.tier,
            max_tenants=body.max_tenants,
            max_bytes=body.max_bytes,
            accepting=body.accepting,
            actor=key.actor,
        )
        if pooler is not None:
            server_pooler.pooler_url_of(body.pooler_url or "", server, field="pooler_url")
            server_pooler.set_pooler(master, platform.box, server, pooler, actor=key.actor)
        master.commit()
    return server_out(ServerLoad(server, 0, 0))


@router.get("/database-servers", response_model=list[ServerOut])
def list_servers(master: MasterDep, key: AdminDep) -> list[ServerOut]:
    """Registered servers (without their URLs) with their labels, stores, bytes and headroom."""
    return [server_out(load) for load in server_loads(master, servers.list_servers(master))]


@router.patch("/database-servers/{name}", response_model=ServerOut)
def update_server(
    name: str, body: ServerUpdate, master: MasterDep, key: AdminDep, platform: PlatformDep
) -> ServerOut:
    """Change a server's labels, capacity or pooler (``pooler_url``); only the fields given
    change, ``null`` clears a label, a bound or the pooler. Stores already there stay
    (``accepting: false`` only stops new ones)."""
    given = body.model_fields_set
    with audit_failures(master, platform, key, "server.set", "database_server", name):
        server = servers.get_server(master, name)
        changes = {field: getattr(body, field) for field in given if field != "pooler_url"}
        placement_labels.configure_server(master, server, **changes, actor=key.actor)
        if "pooler_url" in given:
            pooler = (
                server_pooler.pooler_url_of(body.pooler_url, server, field="pooler_url")
                if body.pooler_url
                else None
            )
            server_pooler.set_pooler(master, platform.box, server, pooler, actor=key.actor)
        master.commit()
    (load,) = server_loads(master, [server])
    return server_out(load)


@router.delete("/database-servers/{name}", status_code=status.HTTP_204_NO_CONTENT)
def remove_server(name: str, master: MasterDep, key: AdminDep, platform: PlatformDep) -> Response:
    """Unregister a server; 409 naming the stores while their databases live there."""
    with audit_failures(master, platform, key, "server.remove", "database_server", name):
        spare_pool.remove_server(
            platform.sessions, platform.box, platform.settings, name, actor=key.actor
        )
    return Response(status_code=status.HTTP_204_NO_CONTENT)
