"""Rotating the keys that encrypt stored secrets.

What is rotated comes from one registry: every column declared with
:func:`tenantry.crypto.sealed_column` in the metadata of a role that stores secrets
(:data:`SEALED_ROLES`). Each database is resealed in its own transaction, so a rotation
interrupted between databases leaves some rows under the new key and some under an old one;
that is safe as long as every key stays configured, which is why old keys are retired only
after :func:`unreadable` finds nothing in any database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Column, and_, func, or_, select, update
from sqlalchemy.orm import Session

from tenantry.crypto import SecretBox, sealed_columns
from tenantry.db.master.models import HELD_STATUSES, Operation, OperationKind
from tenantry.db.schemas import SchemaSpec, billing_schema, master_schema
from tenantry.errors import ConfigurationError
from tenantry.services import audit


def sealed_schemas() -> tuple[SchemaSpec, ...]:
    """The roles whose databases hold sealed columns: master and billing. (A tenant's
    database is the app's own and holds no secret of tenantry's.)"""
    return (master_schema(), billing_schema())


@dataclass
class Resealed:
    """How many stored secrets of one database were re-encrypted, per ``table.column``."""

    role: str
    columns: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """All of them."""
        return sum(self.columns.values())

    def as_dict(self) -> dict[str, Any]:
        """The counts as JSON (names and numbers only, never a secret)."""
        return {"total": self.total, "columns": dict(self.columns)}


def _name(column: Column[Any]) -> str:
    return f"{column.table.name}.{column.name}"


def _rows(session: Session, columns: list[Column[Any]]) -> list[Any]:
    """Every row of the columns' table with a value in any of them: primary key + tokens."""
    table = columns[0].table
    keys = list(table.primary_key.columns)
    query = select(*keys, *columns).where(or_(*(c.is_not(None) for c in columns)))
    return list(session.execute(query.order_by(*keys)))


def _by_table(spec: SchemaSpec) -> list[list[Column[Any]]]:
    tables: dict[str, list[Column[Any]]] = {}
    for column in sealed_columns(spec.metadata):
        tables.setdefault(column.table.name, []).append(column)
    return list(tables.values())


def reseal(session: Session, box: SecretBox, spec: SchemaSpec) -> Resealed:
    """Re-encrypt every sealed column of ``spec``'s database under the box's primary key, in
    the caller's transaction (all of that database or, on any failure, none of it).

    Each row is updated only if its token is still the one read (compare and swap): a
    secret changed meanwhile by another process is kept as that process wrote it, not
    overwritten with the old secret resealed.
    """
    result = Resealed(spec.role.value)
    for columns in _by_table(spec):
        table = columns[0].table
        keys = list(table.primary_key.columns)
        for column in columns:
            result.columns[_name(column)] = 0
        for row in _rows(session, columns):
            where = [k == row._mapping[k.name] for k in keys]
            for column in columns:
                token = row._mapping[column.name]
                if token is None:
                    continue
                try:
                    new = box.reseal(token)
                except ConfigurationError as exc:
                    raise _cannot_open(spec, column, row, keys, exc.hint) from None
                changed = session.execute(
                    update(table).where(and_(*where, column == token)).values({column.name: new})
                )
                # rowcount is "rows matched" on every backend tenantry supports.
                result.columns[_name(column)] += int(changed.rowcount or 0)  # type: ignore[attr-defined]
    return result


def unreadable(session: Session, box: SecretBox, spec: SchemaSpec) -> dict[str, int]:
    """How many tokens of each sealed column of ``spec``'s database ``box`` cannot open
    (columns where every token opens are left out); nothing is written."""
    found: dict[str, int] = {}
    for columns in _by_table(spec):
        for row in _rows(session, columns):
            for column in columns:
                token = row._mapping[column.name]
                if token is not None and not box.can_open(token):
                    found[_name(column)] = found.get(_name(column), 0) + 1
    return found


#: Work that seals a secret in memory (a new login's password, a connection URL) and saves it
#: in a later transaction: run by a process that read the keys before a rotation changed
#: them, it may still save a secret only the old keys open.
SEALING_KINDS = (
    OperationKind.PROVISION,
    OperationKind.MOVE,
    OperationKind.STORE_CREDENTIALS,
    OperationKind.IMPORT,
    OperationKind.IMPORT_BILLING,
    OperationKind.DRAIN,
    OperationKind.REBALANCE,
)


def sealing_work_started_before(session: Session, moment: datetime) -> dict[str, int]:
    """Operations of :data:`SEALING_KINDS` held by a process (running or cancelling) that
    started before ``moment``, counted by kind (kinds with none are left out)."""
    rows = session.execute(
        select(Operation.kind, func.count())
        .where(
            Operation.kind.in_(SEALING_KINDS),
            Operation.status.in_(HELD_STATUSES),
            Operation.started_at < moment,
        )
        .group_by(Operation.kind)
    )
    return {str(kind): int(n) for kind, n in rows}


def record_rotation(
    session: Session, resealed: list[Resealed], *, new_key: bool, actor: str
) -> None:
    """Add master's audit entry for a rotation: counts per database and column."""
    audit.record(
        session,
        actor=actor,
        action="keys.rotate",
        target_type="secrets",
        details={"new_key": new_key, **{r.role: r.as_dict() for r in resealed}},
    )


def _cannot_open(
    spec: SchemaSpec,
    column: Column[Any],
    row: Any,
    keys: list[Column[Any]],
    hint: str | None,
) -> ConfigurationError:
    where = ", ".join(f"{k.name}={row._mapping[k.name]}" for k in keys)
    return ConfigurationError(
        f"a secret in the {spec.role} database ({_name(column)}, row {where}) cannot be "
        f"decrypted with the configured keys; nothing in the {spec.role} database was "
        "re-encrypted.",
        hint,
    )
