"""The mapping file of ``tenantry import shared``: how a shared database's tables feed each
store's own tables.

The smallest useful form copies same-named columns and drops the store-key column::

    stores: {table: stores, key: id, slug: slug, name: name}
    tables:
      products: {from: products, store_column: store_id}
      order_items: {from: order_items, via: {orders: order_id}}

``stores`` names the source table (the shared database's own stores table, or a lookup table
made for the import) whose ``key`` column holds the store key the other tables use, and the
column giving the tenantry store it maps to: its ``slug`` or its ``id``. Each entry of
``tables`` is keyed by the tenant table it feeds; ``columns`` renames (tenant column → source
column) and ``transforms`` set simple values (``constant``, ``default`` for NULLs, ``cast``).

Parsed strictly (pydantic): an unknown key is refused with its place named, so a typo never
silently copies less than meant.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tenantry.errors import InvalidInput

#: The types ``cast`` converts a source value to.
CastType = Literal["str", "int", "float", "decimal", "bool", "uuid", "datetime", "date", "json"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class StoresMapping(_Strict):
    """Where the source's store keys are, and the tenantry store each one is."""

    table: str
    key: str = Field(description="the column holding the store key other tables refer to")
    slug: str | None = Field(None, description="the column holding the tenantry store's slug")
    id: str | None = Field(None, description="the column holding the tenantry store's id")
    name: str | None = Field(None, description="the column naming a store (--create-stores)")

    @model_validator(mode="after")
    def _one_way(self) -> StoresMapping:
        if (self.slug is None) == (self.id is None):
            raise ValueError(
                "give exactly one of `slug` (the column holding each store's tenantry slug) "
                "or `id` (the column holding its tenantry id)"
            )
        return self


class Transform(_Strict):
    """A simple value rule for one tenant column: exactly one of the three."""

    constant: Any = None
    default: Any = None
    cast: CastType | None = None

    @model_validator(mode="before")
    @classmethod
    def _exactly_one(cls, data: Any) -> Any:
        if isinstance(data, dict) and len(data) != 1:
            raise ValueError("give exactly one of `constant`, `default` or `cast`")
        return data

    @property
    def kind(self) -> str:
        """``constant``, ``default`` or ``cast``."""
        return next(iter(self.model_fields_set))


class TableMapping(_Strict):
    """How one tenant table is fed from one source table."""

    source: str = Field(alias="from")
    store_column: str | None = None
    #: ``{parent tenant table: source column referring to the parent's key}``: the store key
    #: is the parent row's (order_items → orders.store_id).
    via: dict[str, str] | None = None
    #: Tenant column → source column, for columns named differently.
    columns: dict[str, str] = Field(default_factory=dict)
    transforms: dict[str, Transform] = Field(default_factory=dict)
    #: The source columns the copy is keyed by; the source's primary key when not given.
    key: list[str] | None = None

    @model_validator(mode="after")
    def _store_path(self) -> TableMapping:
        if (self.store_column is None) == (self.via is None):
            raise ValueError(
                "give exactly one of `store_column` (the column holding the store key) or "
                "`via: {parent_table: column}` (the store key is the parent row's)"
            )
        if self.via is not None and len(self.via) != 1:
            raise ValueError("`via` names exactly one parent table: `via: {orders: order_id}`")
        return self

    @property
    def parent(self) -> tuple[str, str] | None:
        """(parent tenant table, source column referring to it) of a ``via`` table."""
        return next(iter(self.via.items())) if self.via else None

    def source_column(self, target_column: str) -> str:
        """The source column feeding ``target_column`` (same name unless renamed)."""
        return self.columns.get(target_column, target_column)


class Mapping(_Strict):
    """A whole mapping file."""

    stores: StoresMapping
    tables: dict[str, TableMapping] = Field(min_length=1)

    @model_validator(mode="after")
    def _parents_mapped(self) -> Mapping:
        for name, table in self.tables.items():
            parent = table.parent
            if parent is not None and parent[0] not in self.tables:
                raise ValueError(
                    f"tables.{name}.via names {parent[0]!r}, which is not a table of this "
                    "mapping: map the parent table too"
                )
        for name in self.tables:  # a via chain must end at a table with a store column
            chain, current = [name], self.tables[name]
            while current.parent is not None:
                nxt = current.parent[0]
                if nxt in chain:
                    raise ValueError(f"tables.{name}.via loops: {' → '.join([*chain, nxt])}")
                chain.append(nxt)
                current = self.tables[nxt]
        return self

    def fingerprint(self) -> str:
        """A SHA-256 of the mapping's meaning (a resumed import must use the same one)."""
        doc = self.model_dump(mode="json", by_alias=True)
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _where(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def parse_mapping(document: Any, *, origin: str = "the mapping") -> Mapping:
    """A :class:`Mapping` from a parsed YAML/JSON ``document``; refuses with every problem
    named by its place (``tables.orders.store_colum: unknown key``)."""
    try:
        return Mapping.model_validate(document)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = "unknown key (a typo?)"
            problems.append(f"{_where(error['loc'])}: {message}")
        raise InvalidInput(
            f"{origin} is not a valid import mapping: " + "; ".join(problems) + ".",
            "Fix it; the README's 'Importing a shared database' section shows the format.",
        ) from None


def load_mapping(path: Path) -> Mapping:
    """Read and check the mapping file at ``path`` (YAML, of which JSON is a subset)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(
            f"cannot read the mapping file {path}: {exc.strerror}.", "Check the path."
        ) from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{path} is not valid YAML: {exc}.", "Fix the syntax.") from None
    return parse_mapping(document, origin=str(path))
