"""What the adapters read from an event, as strict pydantic shapes.

A field the adapter reads that is missing (where required), of the wrong type, out of the
range its column holds or carrying a NUL is a :class:`MalformedEvent` naming the field, found
when the event is received (answered 400), never a silent ``None`` nor an error on every
retry of the background processing. Fields the adapter does not read are not looked at.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from tenantry.billing.processors.base import MalformedEvent

#: Amounts in minor units: far beyond any real payment, far below a BIGINT even summed.
MAX_AMOUNT_MINOR = 10**15
#: 9999-12-31T23:59:59Z, the last second every backend's datetime column holds.
MAX_UNIX_S = 253_402_300_799


def _no_nul(text: str) -> str:
    # PostgreSQL refuses NUL in text: found here, not when the event is applied.
    if "\x00" in text:
        raise ValueError("must not contain NUL characters")
    return text


def _blank_is_none(value: Any) -> Any:
    return None if value == "" else value


def _ref_id(value: Any) -> Any:
    """A reference holds an id or, when expanded, the object itself: its ``id``."""
    return value.get("id") if isinstance(value, dict) else value


Text = Annotated[str, StringConstraints(max_length=255), AfterValidator(_no_nul)]
#: A string field; ``""`` reads as absent.
OptText = Annotated[Text | None, BeforeValidator(_blank_is_none)]
#: A reference to another object: its id (``"cus_…"``) or the expanded object.
Ref = Annotated[OptText, BeforeValidator(_ref_id)]
Code = Annotated[str, StringConstraints(max_length=64), AfterValidator(_no_nul)]
OptCode = Annotated[Code | None, BeforeValidator(_blank_is_none)]
LongText = Annotated[str, StringConstraints(max_length=5000), AfterValidator(_no_nul)]
#: An event's id or type: printable, never empty.
Label = Annotated[str, StringConstraints(min_length=1, pattern=r"^[^\x00-\x1f\x7f]+$")]
EventId = Annotated[Label, StringConstraints(max_length=255)]
EventType = Annotated[Label, StringConstraints(max_length=128)]
Amount = Annotated[int, Field(ge=0, le=MAX_AMOUNT_MINOR)]
UnixSeconds = Annotated[int, Field(ge=0, le=MAX_UNIX_S)]
Currency = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z]{3}$"), AfterValidator(lambda c: c.upper())
]
MetaText = Annotated[str, StringConstraints(max_length=5000), AfterValidator(_no_nul)]
Metadata = dict[MetaText, MetaText]


class Shape(BaseModel):
    """Strict (no coercion: ``"12"`` is not an amount, ``1`` not a boolean), frozen, and
    blind to the fields it does not name."""

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")


class ProcessorObject(Shape):
    """What every processor object read here may carry."""

    id: OptText = None
    currency: Currency | None = None
    status: OptText = None
    metadata: Metadata | None = None

    @property
    def meta(self) -> dict[str, str]:
        """The metadata, ``{}`` when absent."""
        return dict(self.metadata or {})


class PaymentError(Shape):
    """A payment intent's ``last_payment_error``."""

    code: OptCode = None
    decline_code: OptCode = None
    message: LongText | None = None

    @property
    def failure_code(self) -> str | None:
        """The code, or the card's decline code."""
        return self.code or self.decline_code


S = TypeVar("S", bound=Shape)


def _where(loc: tuple[int | str, ...], prefix: str) -> str:
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            text = part if len(part) <= 40 else part[:40] + "…"
            path += f".{text}" if path else text
    return path or "the event"


def read(shape: type[S], data: Any, *, where: str = "") -> S:
    """``data`` read as ``shape``; :class:`MalformedEvent` names the first bad field (its
    path from the event's root, ``where`` being the path of ``data``)."""
    try:
        return shape.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        message = str(first["msg"]).removeprefix("Value error, ")
        field = _where(tuple(first["loc"]), where)
        raise MalformedEvent(field, f"{message}{more}") from None


def load_event(body: bytes) -> dict[str, Any]:
    """The JSON object in ``body`` (UTF-8, as both processors send)."""
    try:
        event = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise MalformedEvent("the body", "is not UTF-8 text") from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError; nesting too deep
        raise MalformedEvent("the body", f"is not JSON ({type(exc).__name__})") from None
    if not isinstance(event, dict):
        raise MalformedEvent("the body", "is not a JSON object")
    return event


def unix_time(seconds: int | None) -> datetime | None:
    """A Unix timestamp in seconds (already bounded) as an aware UTC datetime."""
    return datetime.fromtimestamp(seconds, tz=UTC) if seconds is not None else None
