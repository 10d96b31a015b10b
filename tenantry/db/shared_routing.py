"""Serving shared-schema stores through one pool per shared database.

Every connection of a shared database's pool is opened by its pool login, which holds no
privilege of its own and whose ``search_path`` is empty. A store's sessions use a *view* of
that engine (:func:`tenant_view`: the same pool, with the store's schema, role and instance
in its execution options). When a view checks a connection out, :func:`_enter` runs
``SET ROLE <the store's role>; SET search_path TO <its schema>`` and reads the schema's
identity row, refusing the connection unless it is the instance master recorded; when the
connection goes back to the pool (after the pool's rollback), :func:`_leave` runs
``RESET ROLE; RESET search_path``. A connection used by store A and then by store B is
therefore B's alone: B's role cannot read A's schema, and A's schema is not on B's path.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import URL

from tenantry.db.identity import Expected, Identity, refusal
from tenantry.db.shared_schemas import check_name
from tenantry.db.urls import mask
from tenantry.errors import WrongDatabase

if TYPE_CHECKING:  # the async extra (greenlet) is optional: a base install must import this
    from sqlalchemy.ext.asyncio import AsyncEngine

_TENANT = "tenantry_shared_tenant"
_ENTERED = "tenantry_shared_entered"


@dataclass(frozen=True)
class SharedTenant:
    """Who a view of a shared pool serves: the store's schema, role and instance."""

    slug: str
    schema: str
    role: str
    instance_id: str | None


def pool_key(url: URL) -> uuid.UUID:
    """The cache key of a shared database's pool (its URL without the password)."""
    return uuid.uuid5(uuid.NAMESPACE_URL, url.render_as_string(hide_password=True))


def install(engine: Engine) -> None:
    """Make ``engine`` (a pool login's engine on a shared database) enter the store of the
    view that checks a connection out, and leave it when the connection is returned."""

    @event.listens_for(engine, "engine_connect")
    def _connected(conn: Connection) -> None:
        tenant = conn.get_execution_options().get(_TENANT)
        if tenant is not None:
            _enter(conn, tenant)

    @event.listens_for(engine.pool, "checkin")
    def _checkin(dbapi_conn: Any, record: Any) -> None:
        if dbapi_conn is not None and record.info.pop(_ENTERED, False):
            _leave(dbapi_conn, record)


def install_async(engine: AsyncEngine) -> None:
    """:func:`install` for an async engine (the events run on its sync core)."""
    install(engine.sync_engine)


def tenant_view(engine: Engine, tenant: SharedTenant) -> Engine:
    """``engine`` (sharing its pool) whose connections are ``tenant``'s alone."""
    return engine.execution_options(**{_TENANT: tenant})


def tenant_async_view(engine: AsyncEngine, tenant: SharedTenant) -> AsyncEngine:
    """:func:`tenant_view` for an async engine."""
    return engine.execution_options(**{_TENANT: tenant})


def _enter(conn: Connection, tenant: SharedTenant) -> None:
    dbapi_conn = conn.connection.dbapi_connection
    assert dbapi_conn is not None
    role, schema = check_name(tenant.role, "role name"), check_name(tenant.schema, "schema name")
    try:
        # The pool record's info (the same dict the checkin event gets): reset on return.
        conn.connection.info[_ENTERED] = True
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f'SET ROLE "{role}"; SET search_path TO "{schema}"')
            cur.execute("SELECT role, schema_name, instance_id, owner_app FROM tenantry_identity")
            rows = cur.fetchall()
        finally:
            cur.close()
        dbapi_conn.commit()
        _check(conn, tenant, rows)
    except BaseException:
        conn.close()  # back to the pool, where it is reset (or dropped if broken)
        raise


def _check(conn: Connection, tenant: SharedTenant, rows: Sequence[Any]) -> None:
    where = f"schema {tenant.schema} of {mask(conn.engine.url)} (store {tenant.slug!r})"
    expected = Expected("tenant", None, tenant.instance_id)
    found = (
        Identity(rows[0][0], rows[0][1], rows[0][2], rows[0][3], datetime.min)
        if len(rows) == 1
        else None
    )
    if (
        found is None
        or found.role != "tenant"
        or (tenant.instance_id and found.instance_id != tenant.instance_id)
    ):
        shown = found.describe() if found else f"{len(rows)} identity row(s)"
        raise WrongDatabase(
            refusal(
                expected,
                shown,
                where,
                f"store {tenant.slug!r}'s connection leads there, not to its own schema, "
                "so it is not served",
            ),
            "Someone changed the schema behind the connection: check it before serving this "
            "store again.",
        )


def _leave(dbapi_conn: Any, record: Any) -> None:
    try:
        cur = dbapi_conn.cursor()
        try:
            cur.execute("RESET ROLE; RESET search_path")
        finally:
            cur.close()
        dbapi_conn.commit()
    except Exception:
        # A connection that cannot be reset must never be handed to another store.
        record.invalidate()
