"""``import shared``: every store's rows out of a shared database, one operation per store.

:class:`SharedImport` plans (:func:`tenantry.imports.plan.build_plan`: reads the source and
master, writes nothing), refuses a plan with problems, makes the stores that do not exist yet
(``--create-stores``: created and provisioned in this process, like ``provision --inline``),
then runs each store's import (:mod:`.import_store`) with bounded concurrency. One store's
failure never stops the others; a store already imported is skipped.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.engine import URL

from tenantry.db.engines import make_engine, sqlite_path
from tenantry.db.master.models import ProvisioningMode, ProvisioningStatus
from tenantry.errors import InvalidInput
from tenantry.imports.mapping import Mapping
from tenantry.imports.plan import ImportPlan, StoreTarget, build_plan
from tenantry.operations import provision_request
from tenantry.operations.dispatch import InProcessDispatcher
from tenantry.operations.import_progress import ProgressCallback, StoreOutcome
from tenantry.operations.import_store import StoreImporter
from tenantry.operations.lease_takeover import release_if_holder_died
from tenantry.runtime import Platform
from tenantry.services import provisioning, stores
from tenantry.services.moves import describe
from tenantry.services.permissions import ensure_may_write

#: Called with each store's outcome as it ends.
OutcomeCallback = Callable[[StoreOutcome], None]


@dataclass
class SharedImport:
    """An import of the shared database at ``source_url`` into stores, as ``mapping`` says."""

    platform: Platform
    source_url: URL
    mapping: Mapping
    actor: str
    concurrency: int = 1
    server: str | None = None
    #: Rows per batch; None: 2,000 row by row, 50,000 streamed by COPY (PostgreSQL to PostgreSQL).
    batch_rows: int | None = None

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise InvalidInput("--concurrency must be at least 1.")
        path = sqlite_path(self.source_url)
        if path is not None and not path.is_file():  # connecting would create an empty one
            raise InvalidInput(
                f"the source SQLite database {path} does not exist.", "Check the path."
            )
        # One connection per store running, and one more for planning and verifying.
        self.source: Engine = make_engine(self.source_url, pool_size=self.concurrency + 1)

    def close(self) -> None:
        """Let go of the source's connections."""
        self.source.dispose()

    def plan(self, *, only: list[str] | None = None, create_stores: bool = False) -> ImportPlan:
        """What would be copied where, and every problem (nothing is written)."""
        with self.platform.sessions() as session:
            return build_plan(
                self.source,
                session,
                self.mapping,
                self.platform.tenant_spec,
                only=only,
                create_stores=create_stores,
            )

    def importer(
        self, plan: ImportPlan, on_progress: ProgressCallback | None = None
    ) -> StoreImporter:
        """The per-store importer of ``plan``."""
        return StoreImporter(
            self.platform.sessions,
            self.platform.box,
            self.platform.settings,
            self.platform.tenant_spec,
            self.source,
            plan,
            self.actor,
            batch_rows=self.batch_rows,
            on_progress=on_progress,
        )

    def refuse_problems(self, plan: ImportPlan) -> None:
        """Refuse a plan with problems (nothing is written then)."""
        ensure_may_write("import a shared database")
        if plan.problems:
            raise InvalidInput(
                f"the import has {len(plan.problems)} problem(s); nothing was written: "
                + "; ".join(p.describe() for p in plan.problems[:5])
                + ("; …" if len(plan.problems) > 5 else "")
                + ".",
                "See them all with a dry run, fix the mapping or the data, and run it again.",
            )

    def record(self, plan: ImportPlan) -> dict[str, uuid.UUID]:
        """Create the plan's missing stores (their databases come when each is imported) and
        record each store's import operation, queued; operation id by store slug."""
        self.refuse_problems(plan)
        for target in plan.stores:
            if target.store_id is None:
                with self.platform.writer_sessions.begin() as session:
                    made = stores.create_store(
                        session, slug=target.slug, name=target.name, actor=self.actor
                    )
                    target.store_id = made.id
        importer = self.importer(plan)
        return {t.slug: importer.operation_for(t) for t in plan.stores if t.imported_by is None}

    def run(
        self,
        plan: ImportPlan,
        *,
        operations: dict[str, uuid.UUID] | None = None,
        on_progress: ProgressCallback | None = None,
        on_outcome: OutcomeCallback | None = None,
    ) -> list[StoreOutcome]:
        """Import every store of ``plan`` (refused with its problems listed, if it has any),
        as the ``operations`` :meth:`record` made, or operations of its own."""
        self.refuse_problems(plan)
        importer = self.importer(plan, on_progress)
        chosen = operations or {}

        def one(target: StoreTarget) -> StoreOutcome:
            if target.imported_by is not None:
                outcome = StoreOutcome(target.slug, "skipped", target.imported_by)
                outcome.error = f"already imported (operation {target.imported_by})"
            else:
                problem = self._ensure_store(target)
                if problem is not None:
                    outcome = StoreOutcome(target.slug, "failed", error=problem)
                    if target.slug in chosen:
                        importer.give_up(chosen[target.slug], problem)
                else:
                    outcome = importer.run(target, chosen.get(target.slug))
            if on_outcome is not None:
                on_outcome(outcome)
            return outcome

        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="import") as pool:
            return list(pool.map(one, plan.stores))

    def _ensure_store(self, target: StoreTarget) -> str | None:
        """Create and provision ``target``'s store when the plan says so; a problem or None."""
        if target.provisioned:
            return None
        try:
            if target.store_id is None:
                with self.platform.writer_sessions.begin() as session:
                    made = stores.create_store(
                        session, slug=target.slug, name=target.name, actor=self.actor
                    )
                    target.store_id = made.id
            assert target.store_id is not None
            job_id = self._provision(target.store_id)
            with self.platform.sessions() as session:
                job = provisioning.get_job(session, job_id)
                if job.public_status in (ProvisioningStatus.FAILED, ProvisioningStatus.CANCELLED):
                    reason = job.error or "no reason given"
                    return f"provisioning its database {job.public_status}: {reason}"
                if job.public_status != ProvisioningStatus.COMPLETED:
                    return (
                        f"provisioning its database is still {job.public_status} in another "
                        f"process; run the import again once `tenantry stores show "
                        f"{target.slug}` says it is active"
                    )
            target.provisioned = True
        except Exception as exc:
            return describe(exc)
        return None

    def _provision(self, store_id: uuid.UUID) -> uuid.UUID:
        runner = InProcessDispatcher(self.platform, name="import:")
        with self.platform.sessions() as session:
            unfinished = stores.active_job(session, stores.get_store(session, store_id))
        if unfinished is not None:  # begun by an import that was killed: resume it
            platform = self.platform
            release_if_holder_died(platform.sessions, platform.master_engine, unfinished.id)
            runner.enqueue_provision(unfinished.id)
            return unfinished.id
        requested = provision_request.request(
            self.platform,
            runner,
            store_id,
            mode=ProvisioningMode.CREATE_NEW,
            server=self.server,
            actor=self.actor,
        )
        return requested.job_id
