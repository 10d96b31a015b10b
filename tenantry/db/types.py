"""Column types shared by the three schemas, chosen to behave the same on every backend."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from sqlalchemy import JSON, BigInteger, DateTime, Dialect, String, Uuid
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import mapped_column
from sqlalchemy.types import TypeDecorator

#: One naming convention for every role, so constraint names are identical on all backends
#: and a migration can always address a constraint by name.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always returned timezone-aware.

    PostgreSQL keeps the zone; SQLite and MySQL do not, so values are normalised to UTC on
    the way in and tagged as UTC on the way out. MySQL gets microsecond precision, which its
    plain DATETIME would silently drop.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "mysql":
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: tenantry stores only timezone-aware times")
        value = value.astimezone(UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class GUID(TypeDecorator[uuid.UUID]):
    """A UUID: native on PostgreSQL, CHAR(32) on SQLite and on both MySQL and MariaDB.

    MariaDB 10.7+ has a native UUID type that MySQL lacks; keeping one storage for the whole
    MySQL family means a tenant database can move between them and a printed ``mysql`` DDL
    matches what tenantry creates on either.
    """

    impl = Uuid
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "mysql":
            return dialect.type_descriptor(Uuid(native_uuid=False))
        return dialect.type_descriptor(Uuid())


#: Declarative bases map ``uuid.UUID`` annotations to :class:`GUID`.
TYPE_ANNOTATION_MAP: dict[Any, Any] = {uuid.UUID: GUID}


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


# Annotated column shapes reused by every model module.
UuidPk = Annotated[uuid.UUID, mapped_column(GUID, primary_key=True, default=uuid.uuid4)]
CreatedAt = Annotated[datetime, mapped_column(UTCDateTime, nullable=False, default=utcnow)]
UpdatedAt = Annotated[
    datetime, mapped_column(UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow)
]
#: Money is an integer count of the currency's minor unit (cents for USD), never a float.
Money = Annotated[int, mapped_column(BigInteger, nullable=False, default=0)]
Currency = Annotated[str, mapped_column(String(3), nullable=False, default="USD")]
JsonDoc = Annotated[dict[str, Any], mapped_column(JSON, nullable=False, default=dict)]
