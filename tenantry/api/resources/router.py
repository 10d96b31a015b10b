"""The routes of declared resources: one router for a list of :class:`Resource`.

Each route goes through :func:`~tenantry.api.routes.tenant_data.tenant_call`, as the
hand-written store routes do: the key must see the store, a suspended store is refused,
writes wait out a move, the monthly quota applies, the call is logged and counted, a
read-only key's write is refused by the session guard; the route commits the store's
database, then master.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Response, status
from pydantic import BaseModel
from sqlalchemy import JSON
from sqlalchemy.sql.schema import Column

from tenantry.api.fields import Limit, Offset
from tenantry.api.resources.declaration import Resource
from tenantry.api.resources.schemas import key_type
from tenantry.api.routes.tenant_data import Call, TenantCall
from tenantry.services import resource_rows

#: A cursor as :func:`resource_rows.encode_cursor` makes them.
CURSOR = Annotated[
    str | None,
    Query(
        max_length=2000,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="next_cursor of the previous page (keyset paging).",
    ),
]


def _param(name: str, annotation: Any, default: Any = inspect.Parameter.empty) -> inspect.Parameter:
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default
    )


def _endpoint(
    func: Callable[..., Any], name: str, doc: str, params: list[inspect.Parameter]
) -> Callable[..., Any]:
    func.__name__ = name
    func.__qualname__ = name
    func.__doc__ = doc
    func.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    return func


def _key_params(resource: Resource) -> list[inspect.Parameter]:
    return [
        _param(c.name, Annotated[key_type(c), Path(description=f"The row's {c.name}.")])
        for c in resource.keys
    ]


def _key(resource: Resource, given: dict[str, Any]) -> list[Any]:
    return [given[c.name] for c in resource.keys]


def _values(resource: Resource, body: BaseModel, *, partial: bool) -> dict[str, Any]:
    given = body.model_dump(exclude_unset=partial)
    columns = {c.name: c for c in resource.columns(list(given))}
    # null on a column that cannot be null: its default (POST) or unchanged (PATCH); a JSON
    # column without a default keeps it, as the JSON value null.
    return {n: v for n, v in given.items() if v is not None or _keeps_null(columns[n])}


def _keeps_null(column: Column[Any]) -> bool:
    return bool(column.nullable) or (isinstance(column.type, JSON) and column.default is None)


def add_routes(router: APIRouter, resource: Resource) -> None:
    """Add ``resource``'s routes to ``router``."""
    model, out, noun = resource.model, resource.out_model, resource.noun
    collection = f"/{resource.path}"
    item = collection + "".join(f"/{{{c.name}}}" for c in resource.keys)
    ident = resource.path.replace("-", "_")
    call_param = _param("call", Call)
    tags: list[str | Enum] = [resource.path]

    def list_rows(**kw: Any) -> Any:
        call: TenantCall = kw.pop("call")
        limit, offset, after = kw.pop("limit"), kw.pop("offset"), kw.pop("after")
        page = resource_rows.list_rows(
            call.tenant, model, filters=kw, limit=limit, offset=offset, after=after
        )
        items = [out.model_validate(r) for r in page.rows]
        return resource.page_model(items=items, next_cursor=page.next_cursor)

    filters = [
        _param(
            c.name,
            Annotated[key_type(c) | None, Query(description=f"Only rows with this {c.name}.")],
            None,
        )
        for c in resource.columns(resource.filters)
    ]
    router.add_api_route(
        collection,
        _endpoint(
            list_rows,
            f"list_{ident}",
            f"The store's {noun} rows in key order, a page at a time (`limit`, then `after` "
            "the last page's `next_cursor`, or `offset`).",
            [
                call_param,
                _param("limit", Limit, 50),
                _param("offset", Offset, 0),
                _param("after", CURSOR, None),
                *filters,
            ],
        ),
        methods=["GET"],
        response_model=resource.page_model,
        tags=tags,
    )

    def get_row(**kw: Any) -> Any:
        call: TenantCall = kw.pop("call")
        return out.model_validate(resource_rows.get_row(call.tenant, model, _key(resource, kw)))

    router.add_api_route(
        item,
        _endpoint(
            get_row, f"get_{ident}", f"One {noun} row.", [call_param, *_key_params(resource)]
        ),
        methods=["GET"],
        response_model=out,
        tags=tags,
    )

    if resource.create_model is not None:
        create_body = resource.create_model

        def create_row(**kw: Any) -> Any:
            call: TenantCall = kw["call"]
            row = resource_rows.create_row(
                call.tenant,
                model,
                _values(resource, kw["body"], partial=False),
                master=call.master,
                store=call.store,
                limit=resource.limit,
            )
            shown = out.model_validate(row)
            call.commit()
            return shown

        limit_note = (
            f" (refused past the plan's {resource.limit.what} limit)" if resource.limit else ""
        )
        router.add_api_route(
            collection,
            _endpoint(
                create_row,
                f"create_{ident}",
                f"Add a {noun} row{limit_note}; a reference to a row that does not exist is "
                "a 422 and a duplicate a 409, each naming the field.",
                [_param("body", Annotated[create_body, Body()]), call_param],
            ),
            methods=["POST"],
            status_code=status.HTTP_201_CREATED,
            response_model=out,
            tags=tags,
        )

    if resource.update_model is not None:
        update_body = resource.update_model

        def update_row(**kw: Any) -> Any:
            call: TenantCall = kw.pop("call")
            body = kw.pop("body")
            row = resource_rows.get_row(call.tenant, model, _key(resource, kw))
            row = resource_rows.update_row(
                call.tenant, model, row, _values(resource, body, partial=True)
            )
            shown = out.model_validate(row)
            call.commit()
            return shown

        router.add_api_route(
            item,
            _endpoint(
                update_row,
                f"update_{ident}",
                f"Change a {noun} row (only the fields given).",
                [
                    _param("body", Annotated[update_body, Body()]),
                    call_param,
                    *_key_params(resource),
                ],
            ),
            methods=["PATCH"],
            response_model=out,
            tags=tags,
        )

    if resource.delete:

        def delete_row(**kw: Any) -> Response:
            call: TenantCall = kw.pop("call")
            row = resource_rows.get_row(call.tenant, model, _key(resource, kw))
            resource_rows.delete_row(
                call.tenant, model, row, store=call.store, limit=resource.limit
            )
            call.commit()
            return Response(status_code=status.HTTP_204_NO_CONTENT)

        router.add_api_route(
            item,
            _endpoint(
                delete_row,
                f"delete_{ident}",
                f"Remove a {noun} row (rows that depend on it go with it or lose the reference).",
                [call_param, *_key_params(resource)],
            ),
            methods=["DELETE"],
            status_code=status.HTTP_204_NO_CONTENT,
            response_class=Response,
            tags=tags,
        )


def resource_router(resources: Sequence[Resource]) -> APIRouter:
    """A router serving each of ``resources`` under ``/stores/{store_ref}``."""
    router = APIRouter(prefix="/stores/{store_ref}")
    for resource in resources:
        add_routes(router, resource)
    return router
