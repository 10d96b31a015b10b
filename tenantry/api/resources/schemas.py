"""Request and response models of a declared resource, derived from its table's columns.

Every request type is bounded as the hand-written schemas are (:mod:`tenantry.api.fields`):
strings by their column's length (no NUL, which PostgreSQL cannot store), integers by their
column's size, JSON by the metadata rules, timestamps timezone-aware.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from annotated_types import Ge, Le
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    create_model,
)
from sqlalchemy import JSON, BigInteger, Boolean, Integer, String, Text
from sqlalchemy.sql.schema import Column

from tenantry.api.fields import (
    INT32_MAX,
    INT64_MAX,
    METADATA_VALUE_MAX,
    Metadata,
    MetadataValue,
    RequestModel,
    StrictBool,
    UInt32,
    UInt64,
)
from tenantry.api.fields import Text as BoundedText
from tenantry.db.types import GUID, UTCDateTime

#: No NUL character: PostgreSQL refuses it in text.
NO_NUL = r"^[^\x00]*$"


def _in_range(value: datetime) -> datetime:
    # Every database holds years 1000 to 9999 once the time is in UTC.
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        raise ValueError("must be a time between the years 1000 and 9999") from None
    if not 1000 <= utc.year <= 9999:
        raise ValueError("must be a time between the years 1000 and 9999")
    return value


#: A timezone-aware time the database can hold.
Timestamp = Annotated[AwareDatetime, AfterValidator(_in_range)]
#: A JSON value as a store keeps one: a scalar, a short list of scalars or a flat object.
JsonValue = MetadataValue | Annotated[list[MetadataValue], Field(max_length=100)] | Metadata


class UnsupportedColumn(TypeError):
    """A column whose type a resource cannot derive a field for (declare its type)."""


def _string(column: Column[Any]) -> Any:
    length = getattr(column.type, "length", None) or METADATA_VALUE_MAX
    return Annotated[
        str,
        Strict(),
        StringConstraints(
            min_length=0 if column.nullable else 1, max_length=length, pattern=NO_NUL
        ),
    ]


def request_type(column: Column[Any]) -> Any:
    """The request field type of ``column`` (not optional)."""
    kind = column.type
    if isinstance(kind, GUID):
        return uuid.UUID
    if isinstance(kind, UTCDateTime):
        return Timestamp
    if isinstance(kind, Boolean):
        return StrictBool
    if isinstance(kind, BigInteger):
        return UInt64
    if isinstance(kind, Integer):
        return UInt32
    if isinstance(kind, Text):
        return Annotated[BoundedText, StringConstraints(pattern=NO_NUL)]
    if isinstance(kind, String):
        return _string(column)
    if isinstance(kind, JSON):
        return JsonValue
    raise UnsupportedColumn(
        f"column {column.table.name}.{column.name} ({kind!r}) has no derived request type; "
        "give it one in the resource's fields."
    )


def key_type(column: Column[Any]) -> Any:
    """The type of ``column`` as a path or query parameter."""
    kind = column.type
    if isinstance(kind, GUID):
        return uuid.UUID
    if isinstance(kind, Boolean):
        return bool
    if isinstance(kind, BigInteger):
        return Annotated[int, Ge(-INT64_MAX), Le(INT64_MAX)]
    if isinstance(kind, Integer):
        return Annotated[int, Ge(-INT32_MAX), Le(INT32_MAX)]
    if isinstance(kind, String) and not isinstance(kind, Text):
        length = getattr(kind, "length", None) or METADATA_VALUE_MAX
        return Annotated[str, StringConstraints(min_length=1, max_length=length, pattern=NO_NUL)]
    raise UnsupportedColumn(
        f"column {column.table.name}.{column.name} ({kind!r}) cannot be a key or a filter."
    )


def response_type(column: Column[Any]) -> Any:
    """The response field type of ``column``."""
    kind = column.type
    if isinstance(kind, GUID):
        found: Any = uuid.UUID
    elif isinstance(kind, UTCDateTime):
        found = datetime
    elif isinstance(kind, JSON):
        return Any
    else:
        try:
            found = kind.python_type
        except NotImplementedError:
            return Any
    return found | None if column.nullable else found


def _has_default(column: Column[Any]) -> bool:
    return (
        column.nullable is True
        or column.default is not None
        or column.server_default is not None
        or (column.primary_key and column.autoincrement is True)
    )


def create_body(
    name: str, columns: list[Column[Any]], overrides: dict[str, Any], doc: str
) -> type[BaseModel]:
    """The POST body: the writable columns, required unless the column has a default (or
    is nullable)."""
    fields: dict[str, Any] = {}
    for column in columns:
        kind = overrides.get(column.name) or request_type(column)
        if _has_default(column):
            fields[column.name] = (kind | None, None)  # null: the column's default
        else:
            fields[column.name] = (kind, ...)
    return create_model(name, __base__=RequestModel, __doc__=doc, **fields)


def update_body(
    name: str, columns: list[Column[Any]], overrides: dict[str, Any], doc: str
) -> type[BaseModel]:
    """The PATCH body: any of the changeable columns; null clears a nullable one (and
    leaves any other as it is)."""
    fields: dict[str, Any] = {}
    for column in columns:
        kind = overrides.get(column.name) or request_type(column)
        fields[column.name] = (kind | None, None)
    return create_model(name, __base__=RequestModel, __doc__=doc, **fields)


class ResponseModel(BaseModel):
    """Base of a resource's response: built from the row's attributes."""

    model_config = ConfigDict(from_attributes=True, populate_by_name=True)


def out_model(name: str, columns: list[Column[Any]], attrs: list[str], doc: str) -> type[BaseModel]:
    """The response body: every column (named as the table names it)."""
    fields: dict[str, Any] = {}
    for column, attr in zip(columns, attrs, strict=True):
        fields[column.name] = (response_type(column), Field(validation_alias=attr))
    return create_model(name, __base__=ResponseModel, __doc__=doc, **fields)


def page_model(name: str, item: type[BaseModel], doc: str) -> type[BaseModel]:
    """A page of items with the cursor of the next."""
    return create_model(
        name,
        __doc__=doc,
        items=(list[item], ...),  # type: ignore[valid-type]
        next_cursor=(str | None, Field(description="Pass as `after` for the next page.")),
    )
