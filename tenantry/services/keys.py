"""Rotating the keys that encrypt stored secrets."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from tenantry.crypto import SecretBox
from tenantry.db.master.models import DatabaseServer, IntegrationConfig, ProvisioningJob
from tenantry.services import audit


@dataclass(frozen=True)
class Resealed:
    """How many stored secrets were re-encrypted under the primary key."""

    servers: int
    connections: int
    jobs: int

    @property
    def total(self) -> int:
        """All of them."""
        return self.servers + self.connections + self.jobs


def reseal_all(session: Session, box: SecretBox, *, actor: str = "cli") -> Resealed:
    """Re-encrypt every stored secret under the box's primary key, in the caller's
    transaction: all of them or, on any failure, none."""
    servers = connections = jobs = 0
    for server in session.scalars(select(DatabaseServer)):
        server.admin_url_encrypted = box.reseal(server.admin_url_encrypted)
        servers += 1
    for config in session.scalars(
        select(IntegrationConfig).where(IntegrationConfig.secret_encrypted.is_not(None))
    ):
        assert config.secret_encrypted is not None
        config.secret_encrypted = box.reseal(config.secret_encrypted)
        connections += 1
    for job in session.scalars(
        select(ProvisioningJob).where(ProvisioningJob.secret_encrypted.is_not(None))
    ):
        assert job.secret_encrypted is not None
        job.secret_encrypted = box.reseal(job.secret_encrypted)
        jobs += 1
    result = Resealed(servers, connections, jobs)
    audit.record(
        session,
        actor=actor,
        action="keys.rotate",
        target_type="secrets",
        details={"servers": servers, "connections": connections, "jobs": jobs},
    )
    return result
