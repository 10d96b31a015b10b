"""One store's import as it goes: its progress written to its operation, its outcome, and the
cancel that stops it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tenantry.db.master.models import ProgressUnit
from tenantry.errors import TenantryError
from tenantry.imports.plan import StoreTarget
from tenantry.operations.kit import OperationKit, Record

#: Progress is written to master at most this often (each write renews the lease).
WRITE_INTERVAL_S = 1.0
#: Called with (store slug, rows, bytes) copied since the last call.
ProgressCallback = Callable[[str, int, int], None]


class ImportCancelled(TenantryError):
    """The store's import was asked to stop (``tenantry ops cancel``)."""


@dataclass
class StoreOutcome:
    """How one store's import ended."""

    slug: str
    status: str  # succeeded, failed, cancelled, skipped
    operation_id: uuid.UUID | None = None
    rows: int = 0
    bytes: int = 0
    resumed: bool = False
    error: str | None = None
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The outcome as JSON."""
        return {
            "store": self.slug,
            "status": self.status,
            "operation_id": str(self.operation_id) if self.operation_id else None,
            "rows": self.rows,
            "bytes": self.bytes,
            "resumed": self.resumed,
            "error": self.error,
            "tables": self.tables,
        }


@dataclass
class ImportRun:
    """One store's import as it goes (what its operation's progress says)."""

    op_id: uuid.UUID
    target: StoreTarget
    kit: OperationKit
    on_progress: ProgressCallback | None
    step: str = "prepare"
    rows: int = 0
    bytes: int = 0
    verified: int = 0
    last_write: float = 0.0

    def report(
        self, step: str | None = None, *, force: bool = False, record: Record | None = None
    ) -> None:
        """Write the progress to the operation (when the step changes, when ``force``d, else at
        most every :data:`WRITE_INTERVAL_S`), ``record`` in the same master transaction; raises
        :class:`ImportCancelled` when the import was asked to stop (``record`` then unwritten)."""
        changed = step is not None and step != self.step
        self.step = step or self.step
        due = changed or force or record is not None
        if not (due or time.monotonic() - self.last_write >= WRITE_INTERVAL_S):
            return
        verifying = self.step == "verify"
        mb = self.bytes / 1e6
        cancel = self.kit.progress(
            self.op_id,
            step=self.step,
            current=self.verified if verifying else self.rows,
            total=self.target.total,
            unit=ProgressUnit.ROWS,
            message=(
                f"verified {self.verified} rows"
                if verifying
                else f"copied {self.rows} rows ({mb:.1f} MB)"
            ),
            record=record,
        )
        self.last_write = time.monotonic()
        if cancel:
            raise ImportCancelled(
                f"the import of store {self.target.slug!r} was cancelled at step {self.step}.",
                "Its database was put back as it was before the import.",
            )

    def copied(self, rows: int, size: int) -> None:
        self.rows += rows
        self.bytes += size
        if self.on_progress is not None:
            self.on_progress(self.target.slug, rows, size)
        self.report()
