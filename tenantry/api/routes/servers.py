"""Database servers (admin keys only)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from tenantry.api.audit_failures import audit_failures
from tenantry.api.deps import AdminDep, MasterDep, PlatformDep
from tenantry.api.schemas import ServerCreate, ServerOut
from tenantry.services import servers

router = APIRouter(tags=["database servers"])


@router.post("/database-servers", status_code=status.HTTP_201_CREATED, response_model=ServerOut)
def add_server(
    body: ServerCreate, master: MasterDep, key: AdminDep, platform: PlatformDep
) -> ServerOut:
    """Register a PostgreSQL or MySQL/MariaDB server by its admin URL (stored encrypted).

    The URL is validated and tenantry connects with it before saving: an invalid URL or an
    unreachable server is a 422 naming the problem, and nothing is saved.
    """
    with audit_failures(master, platform, key, "server.add", "database_server", body.name):
        server, _ = servers.add_server(
            master,
            platform.box,
            name=body.name,
            admin_url=body.url,
            notes=body.notes,
            actor=key.actor,
        )
        master.commit()
    return ServerOut.model_validate(server, from_attributes=True)


@router.get("/database-servers", response_model=list[ServerOut])
def list_servers(master: MasterDep, key: AdminDep) -> list[ServerOut]:
    """Registered servers (without their URLs)."""
    return [ServerOut.model_validate(s, from_attributes=True) for s in servers.list_servers(master)]


@router.delete("/database-servers/{name}", status_code=status.HTTP_204_NO_CONTENT)
def remove_server(name: str, master: MasterDep, key: AdminDep, platform: PlatformDep) -> Response:
    """Unregister a server; 409 naming the stores while their databases live there."""
    with audit_failures(master, platform, key, "server.remove", "database_server", name):
        servers.remove_server(master, name, actor=key.actor)
        master.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
