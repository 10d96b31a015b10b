"""Bounded field types shared by every request schema and list route.

Every integer the API accepts fits the column it lands in (``BigInteger``: below 2**63,
``Integer``: below 2**31), every string has a length cap matching its column, and metadata is
a small flat object: a value that passes these checks never overflows a column, a driver or
the server's memory. Scalars are strict (``false`` or ``"1"`` is not an integer): FastAPI
validates bodies in Python mode, so strictness is set per scalar type here rather than on the
model, where it would also refuse ISO strings for dates and UUIDs.
"""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import Query
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
)

from tenantry.services.billing.validation import (
    CURRENCIES,
    MAX_AMOUNT_MINOR,
    MAX_QUANTITY,
    MAX_TRIAL_DAYS,
)

#: What a signed 64-bit column (BigInteger) holds, rounded down to the largest value a JSON
#: double also holds exactly (2**63 - 1 is not one: the bound would read as 2**63 to clients
#: and schema tools that parse numbers as doubles).
INT64_MAX = 2**63 - 2**10
#: What a signed 32-bit column (Integer) holds.
INT32_MAX = 2**31 - 1


def _integral(value: object) -> object:
    # JSON Schema's "integer" includes 3.0; strictness is about booleans and strings.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


#: A non-negative count or amount stored in a BigInteger column.
UInt64 = Annotated[int, Field(ge=0, le=INT64_MAX), BeforeValidator(_integral), Strict()]
# The Field first, so the OpenAPI document says minimum/maximum (after the validators it
# would carry pydantic's own ge/le, which no client or fuzzer reads).
#: A byte bound, at least 1, at most 4 PiB: 2**52, below which every integer is exact as a
#: float, so a client comparing in floats never sends one past it.
ByteBound = Annotated[int, Field(ge=1, le=2**52), BeforeValidator(_integral), Strict()]
#: A bound stored in an Integer column: 0 or more.
Bound32 = Annotated[int, Field(ge=0, le=INT32_MAX), BeforeValidator(_integral), Strict()]
#: A non-negative count stored in an Integer column.
UInt32 = Annotated[int, Field(ge=0, le=INT32_MAX), BeforeValidator(_integral), Strict()]
#: An amount of money in minor units (cents), as billing bounds it.
Amount = Annotated[
    int,
    BeforeValidator(_integral),
    Strict(),
    Field(ge=0, le=MAX_AMOUNT_MINOR, description="Amount in minor units (cents)."),
]
#: Days of a trial, as billing bounds them.
TrialDays = Annotated[int, BeforeValidator(_integral), Strict(), Field(ge=0, le=MAX_TRIAL_DAYS)]
#: How many of a thing an order line or a subscription holds.
Quantity = Annotated[int, BeforeValidator(_integral), Strict(), Field(ge=1, le=MAX_QUANTITY)]
#: A JSON boolean, never 0/1 or "true".
StrictBool = Annotated[bool, Strict()]

#: Free text kept in a Text column (descriptions, notes): long enough for prose, not for abuse.
TEXT_MAX = 10_000
Text = Annotated[str, Strict(), StringConstraints(max_length=TEXT_MAX)]


#: Metadata: at most 50 keys of at most 40 characters, each value a scalar (strings of at most
#: 500 characters); nesting is refused, so a document's size is bounded by its shape.
METADATA_MAX_KEYS = 50
METADATA_KEY_MAX = 40
METADATA_VALUE_MAX = 500
MetadataKey = Annotated[str, StringConstraints(min_length=1, max_length=METADATA_KEY_MAX)]
MetadataValue = (
    Annotated[str, Strict(), StringConstraints(max_length=METADATA_VALUE_MAX)]
    | Annotated[int, Strict(), Field(ge=-INT64_MAX, le=INT64_MAX)]
    | Annotated[float, Strict(), Field(allow_inf_nan=False)]
    | StrictBool
    | None
)


def _finite(value: dict[str, object]) -> dict[str, object]:
    # JSON has no NaN/Infinity; a float that is one would not round-trip through the column.
    for item in value.values():
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError("metadata numbers must be finite")
    return value


Metadata = Annotated[
    dict[MetadataKey, MetadataValue],
    Field(max_length=METADATA_MAX_KEYS),
    AfterValidator(_finite),
]


#: A store slug, as the services check it (single hyphens, letters or digits at both ends).
SLUG_PATTERN = r"^[a-z0-9]+(-[a-z0-9]+)*$"
#: A placement label (a server's or a store's region or tier), as the services check it.
LABEL_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"
#: An app id (``X-App-Id``, app keys).
APP_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
#: An id an app gives its own records (external customer ids).
EXTERNAL_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,254}$"
#: A database a backup names: master, billing or store:SLUG.
BACKUP_SCOPE_PATTERN = r"^(master|billing|store:[a-z0-9]+(-[a-z0-9]+)*)$"


#: A billing plan's code.
PLAN_CODE_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
#: An email address as billing checks it.
EMAIL_PATTERN = r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$"


def _iso_currency(code: str) -> str:
    if code.upper() not in CURRENCIES or code not in (code.upper(), code.lower()):
        raise ValueError("must be an ISO 4217 currency code, e.g. USD")
    return code


#: An ISO 4217 code, upper or lower case (the schema lists them; the validator agrees).
Currency = Annotated[
    str,
    Field(
        json_schema_extra={
            "enum": sorted(CURRENCIES) + sorted(c.lower() for c in CURRENCIES),
        },
        description="ISO 4217 code, e.g. USD.",
    ),
    AfterValidator(_iso_currency),
]


#: What each pattern means, for validation messages people can act on.
PATTERN_MEANINGS = {
    SLUG_PATTERN: "lowercase letters, digits and single hyphens (e.g. my-shop)",
    APP_ID_PATTERN: "up to 64 lowercase letters, digits, '_' or '-'",
    LABEL_PATTERN: "1 to 64 lowercase letters, digits and hyphens (e.g. eu-west-1)",
    EXTERNAL_ID_PATTERN: "1 to 255 letters, digits, '_', '.', ':' or '-'",
    BACKUP_SCOPE_PATTERN: "master, billing or store:SLUG",
    PLAN_CODE_PATTERN: "up to 64 lowercase letters, digits, '_', '.' or '-'",
    EMAIL_PATTERN: "an email address",
}


#: Metadata whose values are strings (invoices keep text only).
StringMetadata = Annotated[
    dict[MetadataKey, Annotated[str, StringConstraints(max_length=METADATA_VALUE_MAX)]],
    Field(max_length=METADATA_MAX_KEYS),
]


class RequestModel(BaseModel):
    """Base of every request body: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


#: Page parameters shared by every list route (an offset past 2**63 is not a 500).
Limit = Annotated[int, Query(ge=1, le=500, description="At most this many items.")]
Offset = Annotated[int, Query(ge=0, le=INT64_MAX, description="Skip this many items first.")]
