"""Rows of any table of a tenant schema, read and written generically: what the declared
HTTP resources (:mod:`tenantry.api.resources`) run on.

Functions take the tenant session (and, for plan limits, the master session and the store);
they flush, never commit. Foreign keys and unique columns are checked before the write, so a
bad reference or a duplicate is an error naming the field (422, 409), not a database error;
an integrity error that still happens (a concurrent write) is a 409 too.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Integer, and_, false, func, inspect, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Session
from sqlalchemy.sql.schema import Column, ForeignKeyConstraint, Table, UniqueConstraint

from tenantry.db.master.models import Store
from tenantry.db.types import GUID
from tenantry.errors import Conflict, InvalidInput, NotFound
from tenantry.services.store_data import check_limit, check_storage
from tenantry.services.stores import current_subscription

Model = type[DeclarativeBase]


@dataclass(frozen=True)
class PlanLimit:
    """A plan limit on how many rows a table holds.

    ``column`` names the subscription's limit (``max_products``: ``None`` there is
    unlimited), ``what`` how the refusal calls the rows, ``counter`` (optional) the store's
    column kept equal to the row count in master (``product_count``).
    """

    column: str
    what: str
    counter: str | None = None


def table_of(model: Model) -> Table:
    """The model's table."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


def key_columns(model: Model) -> list[Column[Any]]:
    """The primary key's columns, in order."""
    return list(table_of(model).primary_key.columns)


def attribute_of(model: Model, column: Column[Any]) -> str:
    """The mapped attribute name of ``column`` (a column named ``metadata`` maps elsewhere)."""
    for attr in inspect(model).column_attrs:
        if column in attr.columns:
            return str(attr.key)
    raise KeyError(column.name)


def _label(model: Model) -> str:
    return table_of(model).name.replace("_", " ")


# --------------------------------------------------------------------------- keyset cursors


def encode_cursor(values: Sequence[Any]) -> str:
    """An opaque cursor holding a row's key values."""
    raw = json.dumps([str(v) for v in values]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(model: Model, cursor: str) -> list[Any]:
    columns = key_columns(model)
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        texts = json.loads(raw)
        if not isinstance(texts, list) or len(texts) != len(columns):
            raise ValueError
        return [_parse_key(c, t) for c, t in zip(columns, texts, strict=True)]
    except (ValueError, binascii.Error, UnicodeDecodeError, TypeError):
        raise InvalidInput(
            "after: not a cursor this API returned.",
            "Pass the next_cursor of the previous page, or leave it out for the first page.",
        ) from None


def _parse_key(column: Column[Any], text: object) -> Any:
    if not isinstance(text, str):
        raise ValueError
    if isinstance(column.type, GUID):
        return uuid.UUID(text)
    if isinstance(column.type, Integer):
        return int(text)
    return text


def _after(model: Model, values: list[Any]) -> ColumnElement[bool]:
    # (a, b) > (x, y) spelled out: portable, and each value bound with its column's type.
    columns = key_columns(model)
    clauses = []
    for i, column in enumerate(columns):
        equal = [columns[j] == values[j] for j in range(i)]
        clauses.append(and_(*equal, column > values[i]))
    return or_(*clauses)


# --------------------------------------------------------------------------- reads


@dataclass
class Page:
    """A page of rows; ``next_cursor`` asks for the next (``None``: this was the last)."""

    rows: list[Any]
    next_cursor: str | None


def list_rows(
    tenant: Session,
    model: Model,
    *,
    filters: Mapping[str, Any],
    limit: int,
    offset: int = 0,
    after: str | None = None,
) -> Page:
    """A page of ``model``'s rows in key order, where each column of ``filters`` equals its
    value (``None`` values are no filter), after the row of cursor ``after``, skipping
    ``offset``."""
    table = table_of(model)
    query = select(model)
    for name, value in filters.items():
        if value is not None:
            query = query.where(table.c[name] == value)
    if after:
        query = query.where(_after(model, _decode_cursor(model, after)))
    query = query.order_by(*key_columns(model)).offset(offset).limit(limit + 1)
    rows = list(tenant.scalars(query))
    following = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        following = encode_cursor(
            [getattr(last, attribute_of(model, c)) for c in key_columns(model)]
        )
    return Page(rows, following)


def get_row(tenant: Session, model: Model, key: Sequence[Any]) -> Any:
    """The row of ``model`` with primary key ``key``."""
    row = tenant.get(model, tuple(key) if len(key) > 1 else key[0])
    if row is None:
        shown = "/".join(str(k) for k in key)
        raise NotFound(f"no {_label(model)} row {shown} in this store.")
    return row


# --------------------------------------------------------------------------- integrity


def _check_references(tenant: Session, model: Model, values: Mapping[str, Any]) -> None:
    for constraint in table_of(model).foreign_key_constraints:
        assert isinstance(constraint, ForeignKeyConstraint)
        names = [c.name for c in constraint.columns]
        if not any(n in values for n in names):
            continue
        given = [values.get(n) for n in names]
        if any(v is None for v in given):
            continue
        target = constraint.referred_table
        wheres = [
            element.column == value
            for element, value in zip(constraint.elements, given, strict=True)
        ]
        found = tenant.scalar(select(func.count()).select_from(target).where(*wheres))
        if not found:
            field = ", ".join(names)
            raise InvalidInput(
                f"{field}: no {target.name.replace('_', ' ')} row {'/'.join(map(str, given))} "
                "in this store.",
                "Create it first, or give the id of an existing one (GET its list).",
            )


def _unique_sets(table: Table) -> list[list[str]]:
    sets = [[c.name for c in table.primary_key.columns]]
    sets += [[c.name] for c in table.columns if c.unique]
    sets += [
        [c.name for c in constraint.columns]
        for constraint in table.constraints
        if isinstance(constraint, UniqueConstraint)
    ]
    return sets


def _check_unique(
    tenant: Session, model: Model, values: Mapping[str, Any], row: Any | None
) -> None:
    table = table_of(model)
    for names in _unique_sets(table):
        if not any(n in values for n in names):
            continue
        given = [
            values[n] if n in values else getattr(row, attribute_of(model, table.c[n]), None)
            for n in names
        ]
        if any(v is None for v in given):  # SQL: NULLs never collide
            continue
        query = select(func.count()).select_from(table)
        query = query.where(*[table.c[n] == v for n, v in zip(names, given, strict=True)])
        if row is not None:  # itself is no duplicate
            query = query.where(
                or_(*[c != getattr(row, attribute_of(model, c)) for c in key_columns(model)])
                if key_columns(model)
                else false()
            )
        if tenant.scalar(query):
            shown = ", ".join(f"{n}={v}" for n, v in zip(names, given, strict=True))
            raise Conflict(
                f"{', '.join(names)}: a {_label(model)} row with {shown} exists already.",
                "Change the value, or update the existing row instead.",
            )


def _flush(tenant: Session, model: Model) -> None:
    try:
        tenant.flush()
    except IntegrityError:
        fields = sorted({n for names in _unique_sets(table_of(model)) for n in names})
        raise Conflict(
            f"the {_label(model)} row conflicts with another (one of {', '.join(fields)} "
            "is taken, or a row it names is gone); nothing was changed.",
            "Read the rows again and retry.",
        ) from None


# --------------------------------------------------------------------------- writes


def _count(tenant: Session, model: Model) -> int:
    return int(tenant.scalar(select(func.count()).select_from(table_of(model))) or 0)


def create_row(
    tenant: Session,
    model: Model,
    values: Mapping[str, Any],
    *,
    master: Session,
    store: Store,
    limit: PlanLimit | None = None,
) -> Any:
    """Insert a row of ``model`` from column ``values`` within the plan's storage limit and
    ``limit``; keeps ``limit.counter`` current."""
    subscription = current_subscription(master, store)
    check_storage(store, subscription)
    count = _count(tenant, model) if limit is not None else 0
    if limit is not None and subscription is not None:
        allowed = getattr(subscription, limit.column)
        check_limit(count, allowed, limit.what, subscription.plan_name)
    _check_references(tenant, model, values)
    _check_unique(tenant, model, values, None)
    table = table_of(model)
    row = model(**{attribute_of(model, table.c[name]): v for name, v in values.items()})
    tenant.add(row)
    _flush(tenant, model)
    if limit is not None and limit.counter is not None:
        setattr(store, limit.counter, count + 1)
    return row


def update_row(tenant: Session, model: Model, row: Any, changes: Mapping[str, Any]) -> Any:
    """Change columns of ``row``."""
    _check_references(tenant, model, changes)
    _check_unique(tenant, model, changes, row)
    table = table_of(model)
    for name, value in changes.items():
        setattr(row, attribute_of(model, table.c[name]), value)
    _flush(tenant, model)
    return row


def delete_row(
    tenant: Session,
    model: Model,
    row: Any,
    *,
    store: Store,
    limit: PlanLimit | None = None,
) -> None:
    """Delete ``row`` (rows that depend on it go or lose the reference, as the schema's
    foreign keys say); keeps ``limit.counter`` current."""
    tenant.delete(row)
    _flush(tenant, model)
    if limit is not None and limit.counter is not None:
        setattr(store, limit.counter, _count(tenant, model))
