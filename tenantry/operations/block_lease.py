"""A store's write block held by an operation: it ends when the operation's lease does.

A restore (or any operation that replaces a store's data) blocks the store's writes with a
reason naming the operation, until the end of the operation's lease; a thread renews both
together while the work runs. A process that dies stops renewing them, so the store takes
writes again once the lease lapses, and the recovery sweep lifts the block for good.
"""

from __future__ import annotations

import threading
import uuid
from types import TracebackType

from tenantry.db.types import utcnow
from tenantry.operations.kit import OperationKit
from tenantry.services.write_blocks import block_writes, lift_block, renew_block


class BlockLease:
    """The lease of operation ``operation_id`` (held by ``kit``) and, when ``store_id`` is
    given, that store's write block ``reason``, renewed from a thread while in use."""

    def __init__(
        self,
        kit: OperationKit,
        operation_id: uuid.UUID,
        store_id: uuid.UUID | None,
        reason: str,
    ) -> None:
        self.kit = kit
        self.operation_id = operation_id
        self.store_id = store_id
        self.reason = reason
        #: Set once the lease or the block was lost (taken over after a stall).
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._blocked = False

    def block(self) -> None:
        """Block the store's writes until the lease's end (nothing without a store)."""
        if self.store_id is None:
            return
        with self.kit.sessions.begin() as session:
            block_writes(session, self.store_id, self.reason, utcnow() + self.kit.lease)
        self._blocked = True

    def adopt(self) -> None:
        """Take over a block set already (with the operation's start) and keep renewing it."""
        self._blocked = True
        self.start()

    def renew(self) -> bool:
        """Extend the lease and the block; False when either is no longer this holder's."""
        if not self.kit.renew(self.operation_id):
            return False
        if self.store_id is None or not self._blocked:
            return True
        with self.kit.sessions.begin() as session:
            return renew_block(session, self.store_id, self.reason, utcnow() + self.kit.lease)

    def start(self) -> None:
        """Renew both every third of a lease from a thread, until :meth:`stop`."""
        every = max(self.kit.lease.total_seconds() / 3, 0.05)
        self._stop.clear()

        def renew() -> None:
            while not self._stop.wait(every):
                if not self.renew():
                    self.lost.set()
                    return

        self._thread = threading.Thread(target=renew, name="tenantry-block-lease", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop renewing (the block and the lease stay until lifted or lapsed)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def lift(self, *, bump_connection: bool = False) -> None:
        """Stop renewing and lift the block if the store still carries it (see
        :func:`~tenantry.services.write_blocks.lift_block`)."""
        self.stop()
        if self.store_id is None or not self._blocked:
            return
        self._blocked = False
        with self.kit.sessions.begin() as session:
            lift_block(session, self.store_id, self.reason, bump_connection=bump_connection)

    def __enter__(self) -> BlockLease:
        self.block()
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
