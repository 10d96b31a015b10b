"""Type changes that can lose values: integers, floats, exact numbers, strings and enums
narrowed, or one kind of number turned into another that holds less."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeEngine, to_instance


def unwrap(value: Any) -> TypeEngine[Any]:
    """The type a column stores, from a class or an instance, through any TypeDecorator."""
    # Revisions pass classes (sa.Integer) as often as instances; a TypeDecorator stores its
    # values as its underlying type, which is what narrowing is about.
    type_: TypeEngine[Any] = to_instance(value)
    while isinstance(type_, sa.TypeDecorator):
        type_ = type_.impl_instance
    return type_


def render(type_: TypeEngine[Any], dialect: Dialect) -> str:
    """The type as ``dialect`` spells it (its repr when the dialect cannot)."""
    try:
        return str(type_.compile(dialect=dialect))
    except Exception:  # e.g. an unnamed Enum, which PostgreSQL cannot render
        return repr(type_)


#: Bytes of storage of each integer type, checked most specific first.
_INTEGER_BYTES: tuple[tuple[type[sa.Integer], int], ...] = (
    (sa.BigInteger, 8),
    (sa.SmallInteger, 2),
    (sa.Integer, 4),
)
#: Decimal digits an exact number needs to hold every value of an integer of that many bytes.
_INTEGER_DIGITS = {2: 5, 4: 10, 8: 19}


def _integer_bytes(type_: sa.Integer) -> int:
    return next(size for cls, size in _INTEGER_BYTES if isinstance(type_, cls))


def _mantissa_bits(type_: sa.Float[Any]) -> int:
    if isinstance(type_, sa.REAL) or (type_.precision is not None and type_.precision <= 24):
        return 24
    return 53


def narrowing(old: TypeEngine[Any], new: TypeEngine[Any]) -> str | None:
    """Why changing a column from ``old`` to ``new`` can lose values, or None if it cannot."""
    if isinstance(old, sa.Enum) or isinstance(new, sa.Enum):
        return _enum_narrowing(old, new)
    if isinstance(old, sa.String) and isinstance(new, sa.String):
        return _string_narrowing(old, new)
    if isinstance(old, sa.Integer) and isinstance(new, sa.Integer):
        before, after = _integer_bytes(old), _integer_bytes(new)
        if after < before:
            return (
                f"narrows {before * 8}-bit integers to {after * 8}-bit ones, so larger values "
                "overflow"
            )
        return None
    if isinstance(old, sa.Integer) and isinstance(new, sa.Float):
        bits = _integer_bytes(old) * 8
        if bits > _mantissa_bits(new):
            return f"cannot hold every {bits}-bit integer exactly, so large values are rounded"
        return None
    if isinstance(old, sa.Integer) and isinstance(new, sa.Numeric):
        needed = _INTEGER_DIGITS[_integer_bytes(old)]
        if new.precision is not None and new.precision - (new.scale or 0) < needed:
            return "leaves too few integer digits for the old values, so larger ones overflow"
        return None
    if isinstance(old, sa.Float) and isinstance(new, sa.Float):
        if _mantissa_bits(new) < _mantissa_bits(old):
            return "lowers the floating-point precision, so values are rounded"
        return None
    if isinstance(old, sa.Numeric) and isinstance(new, sa.Integer):
        return _numeric_to_integer(old, new)
    if isinstance(old, sa.Numeric) and isinstance(new, sa.Numeric):
        if isinstance(old, sa.Float) or isinstance(new, sa.Float):
            return "switches between exact and floating-point numbers, so values are rounded"
        return _numeric_narrowing(old, new)
    if isinstance(old, sa.LargeBinary) and isinstance(new, sa.LargeBinary):
        if new.length is not None and (old.length is None or new.length < old.length):
            return "shortens the binary column, so longer values are truncated or rejected"
        return None
    if isinstance(old, sa.DateTime) and isinstance(new, sa.DateTime):
        if old.timezone and not new.timezone:
            return "drops the time zone of every value"
        return None
    if isinstance(old, sa.DateTime) and isinstance(new, sa.Date):
        return "drops the time of day from every value"
    if isinstance(old, sa.Date) and isinstance(new, sa.DateTime):
        return None
    if isinstance(new, type(old)) or isinstance(old, type(new)):
        return None  # the same kind of type, with no parameters known to narrow it
    return (
        "is an unrelated type, so values may fail to convert and code expecting the old type breaks"
    )


def _enum_narrowing(old: TypeEngine[Any], new: TypeEngine[Any]) -> str | None:
    if isinstance(old, sa.Enum) and isinstance(new, sa.Enum):
        gone = [value for value in old.enums if value not in new.enums]
        if gone:
            return f"removes the values {', '.join(gone)}, so rows holding them fail to convert"
        return None
    if isinstance(old, sa.Enum) and isinstance(new, sa.String):
        longest = max((len(value) for value in old.enums), default=0)
        if isinstance(new, sa.Text) or new.length is None or new.length >= longest:
            return None
        return "is shorter than the longest enum value, so such values are truncated or rejected"
    if isinstance(new, sa.Enum) and isinstance(old, sa.String):
        return "allows only the enum's values, so rows holding any other text fail to convert"
    return (
        "is an unrelated type, so values may fail to convert and code expecting the old type breaks"
    )


def _string_narrowing(old: sa.String, new: sa.String) -> str | None:
    if isinstance(old, sa.Text) and not isinstance(new, sa.Text):
        return "bounds unlimited text, so long values are truncated or rejected"
    if isinstance(new, sa.Text) or new.length is None:
        return None
    if old.length is None or new.length < old.length:
        return "shortens it, so longer values are truncated or rejected"
    return None


def _numeric_narrowing(old: sa.Numeric[Any], new: sa.Numeric[Any]) -> str | None:
    if new.precision is None:
        return None  # an unconstrained NUMERIC holds any value
    if old.precision is None:
        return "constrains unconstrained numbers, so values are rounded or rejected"
    # Without a scale, NUMERIC(p) has no decimal places.
    old_scale, new_scale = old.scale or 0, new.scale or 0
    if new_scale < old_scale:
        return "keeps fewer decimal places, so values are rounded"
    if new.precision - new_scale < old.precision - old_scale:
        return "keeps fewer integer digits, so larger values overflow"
    return None


def _numeric_to_integer(old: sa.Numeric[Any], new: sa.Integer) -> str | None:
    if old.precision is None or old.scale:
        return "drops the fractional part of values, or overflows on large ones"
    # NUMERIC(p, 0) fits when its largest value (p nines) has fewer digits than the integer's
    # maximum, e.g. NUMERIC(9) in INTEGER.
    if old.precision < _INTEGER_DIGITS[_integer_bytes(new)]:
        return None
    return "cannot hold every old value, so larger ones overflow"
