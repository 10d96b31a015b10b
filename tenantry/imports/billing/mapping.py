"""The mapping file of a billing import: which legacy table feeds which billing table, how.

Minimal form (YAML); same-named columns are copied, everything else is said::

    tables:
      legacy_customers:              # a table of the source database
        into: customers              # customers | subscriptions | invoices | payments | webhooks
        external_id: id              # the legacy id; the import is idempotent on it
        columns: {name: business_name}           # billing column: source column (renames)
        transforms:                  # per billing column, applied in this order:
          email: {values: {"": null}}            # - values: replace listed values
          quantity: {cast: int}                  # - cast: str | int | decimal | bool | datetime
          currency: {default: USD}               # - default: when the value is null or absent
          amount_minor: {major_to_minor: true}   # - major_to_minor: 12.34 USD -> 1234 cents
          processor: {constant: stripe}          # or constant: the same value for every row
      legacy_invoices:
        into: invoices
        external_id: id
        links: {customer: customer_id}   # the source column holding the customer's legacy id

Every model is strict and refuses unknown keys, naming them; :func:`load_mapping` turns each
mistake into one error that names the file and the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tenantry.errors import InvalidInput
from tenantry.imports.billing.targets import TARGETS, TargetName

Cast = Literal["str", "int", "decimal", "bool", "datetime"]
#: A scalar a mapping may put in a row.
Scalar = str | int | float | bool | None


class Transform(BaseModel):
    """How one billing column's value is made from the row (see the module)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    constant: Scalar = None
    default: Scalar = None
    cast: Cast | None = None
    major_to_minor: bool = False
    values: dict[str, Scalar] | None = None

    @model_validator(mode="after")
    def _constant_alone(self) -> Transform:
        if "constant" in self.model_fields_set and len(self.model_fields_set) > 1:
            others = sorted(self.model_fields_set - {"constant"})
            raise ValueError(f"constant cannot be combined with {', '.join(others)}")
        return self

    @property
    def is_constant(self) -> bool:
        """Whether every row gets the same value (``constant``)."""
        return "constant" in self.model_fields_set

    @property
    def has_default(self) -> bool:
        """Whether a null or absent value is replaced (``default``, even ``default: null``)."""
        return "default" in self.model_fields_set


class TableMapping(BaseModel):
    """One legacy table and the billing table it feeds."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)

    # Not strict: YAML gives the table's name as text.
    into: Annotated[TargetName, Field(strict=False)]
    external_id: str = Field(min_length=1)
    columns: dict[str, str] = Field(default_factory=dict)
    transforms: dict[str, Transform] = Field(default_factory=dict)
    links: dict[str, str] = Field(default_factory=dict)


class Mapping(BaseModel):
    """A whole mapping file: legacy tables by name."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    tables: dict[str, TableMapping] = Field(min_length=1)
    #: Rows read, converted and written per transaction.
    batch_rows: int = Field(500, ge=1, le=10_000)

    def in_order(self) -> list[tuple[str, TableMapping]]:
        """The legacy tables in import order: each row's references come before it."""
        order = {name: i for i, name in enumerate(TargetName)}
        return sorted(self.tables.items(), key=lambda item: (order[item[1].into], item[0]))


def _where(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def _explain(error: dict[str, Any]) -> str:
    where = _where(tuple(error["loc"]))
    if error["type"] == "extra_forbidden":
        return f"unknown key {where!r}"
    if error["type"] == "missing":
        return f"missing key {where!r}"
    return f"{where}: {error['msg']}"


def _semantic_problems(mapping: Mapping) -> list[str]:
    """What the models cannot see alone: columns and links the billing table does not have."""
    problems: list[str] = []
    fed: dict[TargetName, str] = {}
    for source, table in mapping.tables.items():
        target = TARGETS[table.into]
        if table.into in fed:
            problems.append(
                f"tables.{source}: {fed[table.into]!r} feeds {table.into.value} already; one "
                "legacy table per billing table"
            )
        fed[table.into] = source
        for section in ("columns", "transforms"):
            for column in getattr(table, section):
                if target.column(column) is None:
                    problems.append(
                        f"tables.{source}.{section}.{column}: billing {table.into.value} has no "
                        f"column {column!r} an import fills (it has: "
                        f"{', '.join(target.importable())})"
                    )
        for given in table.links:
            if given not in target.links:
                allowed = ", ".join(target.links) or "none"
                problems.append(
                    f"tables.{source}.links.{given}: billing {table.into.value} has no link "
                    f"{given!r} (links: {allowed})"
                )
        for name, link in target.links.items():
            if link.required and name not in table.links:
                problems.append(
                    f"tables.{source}.links: billing {table.into.value} needs link {name!r} "
                    f"(the source column holding the {link.to.value} row's legacy id)"
                )
        for column, transform in table.transforms.items():
            if transform.major_to_minor and not column.endswith("_minor"):
                problems.append(
                    f"tables.{source}.transforms.{column}: major_to_minor applies to money "
                    "columns (…_minor)"
                )
    return problems


def parse_mapping(document: object, *, name: str = "the mapping") -> Mapping:
    """The mapping in ``document`` (YAML already parsed); InvalidInput naming each mistake."""
    hint = "Fix the mapping file (its format is in the README's 'Importing legacy billing')."
    try:
        mapping = Mapping.model_validate(document)
    except ValidationError as exc:
        reasons = "; ".join(_explain(dict(e)) for e in exc.errors())
        raise InvalidInput(f"{name}: {reasons}.", hint) from None
    problems = _semantic_problems(mapping)
    if problems:
        raise InvalidInput(f"{name}: {'; '.join(problems)}.", hint)
    return mapping


def load_mapping(path: Path) -> Mapping:
    """Read and check the mapping file at ``path``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(
            f"mapping file {str(path)!r} does not exist.", "Give the path of a YAML mapping file."
        ) from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise InvalidInput(
            f"mapping file {str(path)!r} is not valid YAML{where}.",
            "Fix its syntax; the format is in the README's 'Importing legacy billing'.",
        ) from None
    return parse_mapping(document, name=f"mapping file {str(path)!r}")
