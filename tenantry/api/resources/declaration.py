"""One declaration per HTTP resource of a tenant schema: :class:`Resource`.

A resource is a table of the store's database served under ``/stores/{store_ref}/{path}``:
a list (keyset and offset pages, equality filters), one row by its primary key, and, when
declared, create, change and delete. Request and response models are derived from the
table's columns (:mod:`tenantry.api.resources.schemas`); a column's request type can be
given instead in ``fields``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from pydantic import BaseModel
from sqlalchemy.sql.schema import Column

from tenantry.api.resources import schemas
from tenantry.services.resource_rows import Model, PlanLimit, attribute_of, key_columns, table_of


@dataclass(frozen=True)
class Resource:
    """A table of the tenant schema served over HTTP.

    ``model``: the SQLAlchemy model; ``path``: its URL segment (``categories``);
    ``create``/``update``: the columns a POST may set and a PATCH may change (none: no such
    route); ``filters``: the columns a list may be filtered on (``?product_id=…``);
    ``delete``: whether rows may be deleted; ``fields``: request types for columns whose
    derived one is not enough (an enum, a currency, an email pattern); ``limit``: the plan
    limit on its row count, with the store's counter kept current; ``title``: what one row is
    called in the API's documentation.
    """

    model: Model
    path: str
    create: Sequence[str] = ()
    update: Sequence[str] = ()
    filters: Sequence[str] = ()
    delete: bool = True
    fields: Mapping[str, Any] = field(default_factory=dict)
    limit: PlanLimit | None = None
    title: str = ""

    def __post_init__(self) -> None:
        table = table_of(self.model)
        for name in (*self.create, *self.update, *self.filters, *self.fields):
            if name not in table.c:
                raise ValueError(
                    f"resource {self.path!r}: table {table.name} has no column {name!r}"
                )
        for name in self.filters:  # fails now, at import, if a filter cannot be a parameter
            schemas.key_type(table.c[name])

    @property
    def name(self) -> str:
        """The model's class name, prefix of the resource's schema names."""
        return self.model.__name__

    @property
    def noun(self) -> str:
        """What one row is called."""
        return self.title or table_of(self.model).name.replace("_", " ")

    @property
    def keys(self) -> list[Column[Any]]:
        """The primary key's columns: the item path's parameters, in order."""
        return key_columns(self.model)

    def columns(self, names: Sequence[str]) -> list[Column[Any]]:
        """The table's columns of ``names``."""
        table = table_of(self.model)
        return [table.c[n] for n in names]

    @cached_property
    def out_model(self) -> type[BaseModel]:
        """The response body of one row."""
        columns = list(table_of(self.model).columns)
        attrs = [attribute_of(self.model, c) for c in columns]
        return schemas.out_model(f"{self.name}Row", columns, attrs, f"A {self.noun} row.")

    @cached_property
    def page_model(self) -> type[BaseModel]:
        """The response body of a list."""
        return schemas.page_model(
            f"{self.name}RowPage", self.out_model, f"A page of {self.noun} rows."
        )

    @cached_property
    def create_model(self) -> type[BaseModel] | None:
        """The POST body (``None``: rows are not created over HTTP)."""
        if not self.create:
            return None
        return schemas.create_body(
            f"{self.name}RowCreate",
            self.columns(self.create),
            dict(self.fields),
            f"A new {self.noun} row.",
        )

    @cached_property
    def update_model(self) -> type[BaseModel] | None:
        """The PATCH body (``None``: rows are not changed over HTTP)."""
        if not self.update:
            return None
        return schemas.update_body(
            f"{self.name}RowUpdate",
            self.columns(self.update),
            dict(self.fields),
            f"Changes to a {self.noun} row.",
        )
