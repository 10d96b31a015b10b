"""``tenantry doctor``: the runbooks of seeds 002 and 004 as checks, each naming what it saw
and the command that fixes it.

A check is a function of a :class:`DoctorContext` returning one or more :class:`Check`
results. The context opens master and billing itself (the CLI: with the connect timeouts of
:mod:`tenantry.db.engines`, and without :meth:`Platform.open`'s refusal of a database that is
not at head, since pending migrations are one of the things reported) or borrows a running
platform's engines (the worker's periodic run). A check that needs a database the context
could not reach raises :class:`Skipped`, reported as critical with the reason; any other error
of a check becomes a critical result naming it, never a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from tenantry.crypto import SecretBox
from tenantry.db.engines import connect, make_engine, sqlite_path
from tenantry.db.schemas import SchemaSpec, tenant_schema
from tenantry.db.urls import mask, redact
from tenantry.errors import TenantryError
from tenantry.settings import Settings

log = logging.getLogger("tenantry.doctor")


class Status(StrEnum):
    """How a check ended, from best to worst."""

    OK = "ok"
    WARNING = "warning"
    CRITICAL = "critical"


_RANK = {Status.OK: 0, Status.WARNING: 1, Status.CRITICAL: 2}


@dataclass(frozen=True)
class Check:
    """One check's result: what was seen (never a secret) and what fixes it."""

    name: str
    status: Status
    evidence: str
    #: The exact command (or action) that fixes it; None when nothing is to be done.
    fix: str | None = None
    #: The operation (or backup) the result is about, when it names one.
    operation_id: str | None = None

    def document(self) -> dict[str, Any]:
        """The result as JSON."""
        return {
            "name": self.name,
            "status": self.status.value,
            "evidence": self.evidence,
            "fix": self.fix,
            "operation_id": self.operation_id,
        }


def ok(name: str, evidence: str) -> Check:
    """A passing result."""
    return Check(name, Status.OK, evidence)


class Skipped(Exception):
    """A check could not run (a database it needs is unreachable): reported as critical."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Database:
    """Master's or billing's engine as the doctor reached it (or why it could not)."""

    role: str
    engine: Engine | None = None
    problem: str | None = None
    #: The context made the engine (and disposes it); a borrowed one stays open.
    owned: bool = False

    @property
    def reachable(self) -> bool:
        """Whether it answered."""
        return self.engine is not None


@dataclass
class DoctorContext:
    """What the checks read: settings, master and billing, the key box, the queue's ping."""

    settings: Settings
    master: Database
    billing: Database
    box: SecretBox | None = None
    box_problem: str | None = None
    #: Pings the job queue (raises when it does not answer); None: not wired.
    queue_depth: Callable[[], int] | None = None
    #: Registered servers that did not answer (not asked again by later checks).
    down_servers: set[str] = field(default_factory=set)
    _sessions: dict[str, sessionmaker[Session]] = field(default_factory=dict)

    @classmethod
    def open(
        cls, settings: Settings, *, queue_depth: Callable[[], int] | None = None
    ) -> DoctorContext:
        """Reach master and billing from ``settings`` (connect errors are kept, not raised)."""
        context = cls(
            settings,
            _reach("master", lambda: settings.master_url),
            _reach("billing", lambda: settings.billing_url),
            queue_depth=queue_depth,
        )
        context._open_box()
        return context

    @classmethod
    def borrow(
        cls,
        settings: Settings,
        master: Engine,
        billing: Engine,
        box: SecretBox,
        *,
        queue_depth: Callable[[], int] | None = None,
    ) -> DoctorContext:
        """A context on engines that a running process already holds (the worker's)."""
        return cls(
            settings,
            Database("master", master),
            Database("billing", billing),
            box,
            queue_depth=queue_depth,
        )

    def _open_box(self) -> None:
        try:
            self.box = SecretBox.from_settings(self.settings)
        except TenantryError as exc:
            self.box_problem = exc.message

    def database(self, role: str) -> Database:
        """Master's or billing's :class:`Database`."""
        return self.master if role == "master" else self.billing

    def engine(self, role: str) -> Engine:
        """The engine of ``role``, or :class:`Skipped` saying why there is none."""
        db = self.database(role)
        if db.engine is None:
            raise Skipped(f"the {role} database is unreachable ({db.problem})")
        return db.engine

    def sessions(self, role: str = "master") -> sessionmaker[Session]:
        """Sessions on ``role``'s database (:class:`Skipped` when it is unreachable)."""
        if role not in self._sessions:
            self._sessions[role] = sessionmaker(self.engine(role), expire_on_commit=False)
        return self._sessions[role]

    def secret_box(self) -> SecretBox:
        """The key box, or :class:`Skipped` when the keys cannot be read."""
        if self.box is None:
            raise Skipped(f"the encryption keys cannot be read ({self.box_problem})")
        return self.box

    def tenant_spec(self) -> SchemaSpec:
        """The tenant schema plug-in in use."""
        return tenant_schema(self.settings.tenant_schema)

    def close(self) -> None:
        """Dispose the engines this context opened itself."""
        for db in (self.master, self.billing):
            if db.owned and db.engine is not None:
                db.engine.dispose()


def _reach(role: str, url_of: Callable[[], URL]) -> Database:
    """Connect once to ``role``'s database; the engine, or the reason it failed."""
    try:
        url = url_of()
    except TenantryError as exc:
        return Database(role, problem=exc.message)
    path = sqlite_path(url)  # SQLite would create a missing file: never here
    if path is not None and not path.is_file():
        return Database(role, problem=f"the {role} database file {path} does not exist")
    try:
        engine = make_engine(url, pool_size=1)
    except TenantryError as exc:
        return Database(role, problem=exc.message)
    try:
        with connect(engine) as conn:
            conn.exec_driver_sql("SELECT 1")
    except TenantryError as exc:
        engine.dispose()
        return Database(role, problem=exc.message)
    except Exception as exc:  # a driver error outside connect's mapping: named, not shown raw
        engine.dispose()
        return Database(role, problem=f"cannot connect to {mask(url)}: {describe(exc)}")
    return Database(role, engine, owned=True)


def describe(exc: BaseException) -> str:
    """An error as one line without secrets (a driver may quote its connection string)."""
    if isinstance(exc, TenantryError):
        return exc.message
    first = (str(exc).strip().splitlines() or [""])[0]
    return redact(f"{type(exc).__name__}: {first}" if first else type(exc).__name__)


CheckFn = Callable[[DoctorContext], Iterable[Check]]


def run_checks(context: DoctorContext, checks: Sequence[tuple[str, CheckFn]]) -> list[Check]:
    """Run each named check; a skipped or broken one becomes a critical result of its name."""
    results: list[Check] = []
    for name, check in checks:
        try:
            results.extend(check(context))
        except Skipped as skip:
            results.append(Check(name, Status.CRITICAL, f"not checked: {skip.reason}"))
        except Exception as exc:  # one broken check must not hide the others' results
            results.append(
                Check(
                    name,
                    Status.CRITICAL,
                    f"the check failed: {describe(exc)}",
                    exc.hint if isinstance(exc, TenantryError) else None,
                )
            )
    return results


def overall(results: Iterable[Check]) -> Status:
    """The worst status among ``results`` (ok when there are none)."""
    worst = Status.OK
    for result in results:
        if _RANK[result.status] > _RANK[worst]:
            worst = result.status
    return worst


def exit_code(status: Status) -> int:
    """``tenantry doctor``'s exit code: 0 all ok, 1 warnings only, 2 any critical."""
    return _RANK[status]


def document(results: Sequence[Check]) -> dict[str, Any]:
    """The JSON document of a run: the overall status and every check."""
    return {"status": overall(results).value, "checks": [r.document() for r in results]}


def log_results(results: Iterable[Check], logger: logging.Logger = log) -> int:
    """Log each result that is not ok (warning at WARNING, critical at ERROR), with the
    operation it names; how many were logged. An all-ok run logs nothing."""
    logged = 0
    for result in results:
        if result.status is Status.OK:
            continue
        level = logging.ERROR if result.status is Status.CRITICAL else logging.WARNING
        about = f" (operation {result.operation_id})" if result.operation_id else ""
        fix = f"; fix: {result.fix}" if result.fix else ""
        logger.log(
            level,
            "doctor: %s is %s%s: %s%s",
            result.name,
            result.status.value,
            about,
            result.evidence,
            fix,
            extra={"check": result.name, "operation_id": result.operation_id},
        )
        logged += 1
    return logged
