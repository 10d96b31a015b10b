"""A provisioning job as application code follows it: ``app.provision(...).wait()``."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from tenantry.db.master.models import ProvisioningStatus
from tenantry.operations.dispatch import InProcessDispatcher
from tenantry.runtime import Platform
from tenantry.services import provisioning

FINISHED = frozenset(
    {ProvisioningStatus.COMPLETED, ProvisioningStatus.FAILED, ProvisioningStatus.CANCELLED}
)
POLL_SECONDS = 0.2


@dataclass
class ProvisionHandle:
    """One provisioning job; :meth:`refresh` reads its state from master again."""

    platform: Platform
    job_id: uuid.UUID
    slug: str
    runner: InProcessDispatcher | None = None
    status: str = ProvisioningStatus.QUEUED
    step: str | None = None
    progress: int = 0
    message: str | None = None
    error: str | None = field(default=None)

    @property
    def finished(self) -> bool:
        """Whether the job completed, failed or was cancelled."""
        return self.status in FINISHED

    @property
    def completed(self) -> bool:
        """Whether the store's database is ready."""
        return self.status == ProvisioningStatus.COMPLETED

    def refresh(self) -> ProvisionHandle:
        """Read the job's status, step, progress and error again."""
        with self.platform.sessions() as session:
            job = provisioning.get_job(session, self.job_id)
            self.status = job.public_status
            self.step, self.progress = job.step, job.progress
            self.message, self.error = job.message, job.error
        return self

    def wait(self, timeout: float = 600.0) -> ProvisionHandle:
        """Follow the job until it finishes (check :attr:`completed` and :attr:`error`);
        :class:`TimeoutError` after ``timeout`` seconds, the job left running. With the
        configured queue a ``tenantry worker`` must be running to take the job."""
        deadline = time.monotonic() + timeout
        while not self.refresh().finished:
            if self.runner is not None:
                self.runner.raise_failure()
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"provisioning {self.slug!r} (job {self.job_id}) is still {self.status} "
                    f"after {timeout:g} s; it goes on (is a `tenantry worker` running?)."
                )
            time.sleep(POLL_SECONDS)
        return self
