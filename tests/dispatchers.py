"""A job dispatcher for tests that want jobs to stay queued."""

from __future__ import annotations

import uuid

from tenantry.operations.dispatch import OnReady


class KeptQueued:
    """A dispatcher that only keeps what it is handed: jobs stay queued."""

    where = "nowhere (test)"

    def __init__(self) -> None:
        self.jobs: list[uuid.UUID] = []

    def enqueue_provision(self, job_id: uuid.UUID) -> None:
        self.jobs.append(job_id)

    def enqueue_fleet_tenants(self, run_id: uuid.UUID, store_ids: list[uuid.UUID]) -> None:
        raise AssertionError("not used")

    def enqueue_backup(self, backup_id: uuid.UUID, scope: str) -> None:
        raise AssertionError("not used")

    def enqueue_import(self, operation_id: uuid.UUID) -> None:
        raise AssertionError("not used")

    def enqueue_drain(self, operation_id: uuid.UUID, concurrency: int) -> None:
        raise AssertionError("not used")

    def enqueue_rebalance(self, operation_id: uuid.UUID, concurrency: int) -> None:
        raise AssertionError("not used")

    def depth(self) -> int:
        return len(self.jobs)

    def run_workers(self, threads: int, *, on_ready: OnReady | None = None) -> None:
        raise AssertionError("not used")

    def close(self) -> None:
        pass
