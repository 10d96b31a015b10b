"""Byte progress of a streaming step (a dump, a restore) reported through the operation kit.

The dump and restore tools report every chunk they move; the kit records progress in master,
so the chunks are summed and written at most every :data:`REPORT_EVERY_S`. Each write is also a
step boundary: when the operation was asked to stop, :class:`Stopped` is raised from inside the
stream, which stops the tool (its pipe is closed), and the operation cleans up.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from tenantry.backup.artifacts import Progress
from tenantry.db.master.models import ProgressUnit
from tenantry.failpoints import failpoint
from tenantry.operations.kit import OperationKit

#: How often a streaming step writes its progress to master.
REPORT_EVERY_S = 0.5


class Stopped(BaseException):
    """The operation was asked to stop (``tenantry ops cancel``) and stops here.

    A BaseException so that no ``except Exception`` on the way (a tool's error handling, a
    restore test turning errors into findings) mistakes it for a failure.
    """


@dataclass
class ByteReporter:
    """A :data:`Progress` callback for operation ``operation_id`` (None: not recorded as an
    operation), passing every chunk on to ``also`` (a progress bar)."""

    kit: OperationKit | None
    operation_id: uuid.UUID
    also: Progress | None = None
    done: int = 0
    _last: float = field(default_factory=time.monotonic)

    def __call__(self, n: int) -> None:
        failpoint("backup.chunk")  # tests: a dump slow enough to be killed or cancelled mid-way
        self.done += n
        if self.also is not None:
            self.also(n)
        now = time.monotonic()
        if self.kit is not None and now - self._last >= REPORT_EVERY_S:
            self._last = now
            if self.kit.progress(self.operation_id, current=self.done, unit=ProgressUnit.BYTES):
                raise Stopped
