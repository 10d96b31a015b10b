"""What provisioning does inside a store's database, on a connection its operation opens.

Check what is there (refusing a database of another role or schema, or tables that do not
match), stamp identity and migrate to head, and write the schema's initial data. Every step is
idempotent: run again on a database it already set up, it finds the work done.
"""

from __future__ import annotations

from sqlalchemy import Connection

from tenantry.db import builder, checksums, migrations
from tenantry.db.builder import TenantState
from tenantry.db.identity import stamp_identity
from tenantry.db.master.models import Store
from tenantry.db.schemas import SchemaSpec
from tenantry.errors import SchemaMismatch, WrongDatabase


def inspect(conn: Connection, spec: SchemaSpec, *, trusted: bool) -> TenantState:
    """What the database on ``conn`` holds; refuses one that is another role's or schema's.
    ``trusted``: this job created the database, so it holds only what tenantry made."""
    state = builder.inspect_tenant(conn, spec, trusted=trusted)
    identity = state.identity
    if identity is not None and (identity.role != "tenant" or identity.schema_name != spec.name):
        raise WrongDatabase(
            f"expected an empty or {spec.name} tenant database, found "
            f"{identity.describe()}; nothing was changed."
        )
    return state


def refuse_conflicts(spec: SchemaSpec, state: TenantState) -> None:
    """Raise :class:`SchemaMismatch` when tables in the database differ from the schema's."""
    if state.conflicts:
        shown = "; ".join(state.conflicts[:6])
        raise SchemaMismatch(
            f"the database holds tables that do not match the {spec.name} schema "
            f"({len(state.conflicts)} difference(s): {shown}); nothing was changed.",
            "Connect an empty database, or one whose tables match the schema.",
        )


def needs_tables(state: TenantState, *, trusted: bool) -> bool:
    """Whether tables must be created: not for an existing tenant database (migrations bring
    it up to date), nor for a complete clone of the template (only its identity is missing)."""
    if state.identity is not None and state.revision is not None:
        return False
    return not (trusted and not state.missing and state.revision is not None)


def stamp_and_migrate(
    conn: Connection, spec: SchemaSpec, owner: str, instance_id: str | None = None
) -> str:
    """Stamp identity on the database on ``conn`` if it has none (as ``instance_id``, or a
    new one), migrate it to head and record the applied scripts' hashes, in the caller's
    transaction; its instance id."""
    # The inspect step compared the tables that were there; the rest were made here.
    state = builder.inspect_tenant(conn, spec, trusted=True)
    identity = state.identity
    if identity is None:
        if state.missing or state.conflicts:
            raise SchemaMismatch(
                "the tables do not match the schema after creating them: "
                + "; ".join((state.conflicts or state.missing)[:6])
            )
        identity = stamp_identity(conn, spec, owner, instance_id=instance_id)
        if state.revision is None:
            head = migrations.head(spec)
            if head is not None:
                migrations.stamp(conn, spec, head)
    current = migrations.current(conn, spec)
    head = migrations.head(spec)
    if head is not None and current != head:
        migrations.upgrade(conn, spec, head)
    # Built here from these scripts: their hashes are what was applied.
    checksums.record_missing(conn, spec)
    return identity.instance_id


def seed(conn: Connection, spec: SchemaSpec, store: Store) -> None:
    """Write the schema's initial data for ``store``, in the caller's transaction."""
    if spec.seed is not None:
        spec.seed(conn, {"name": store.name, "slug": store.slug, "id": str(store.id)})


def stamp_and_seed_clone(
    conn: Connection, spec: SchemaSpec, owner: str, store: Store, instance_id: str | None = None
) -> str:
    """A fresh copy of the template (every table at head, an empty identity table): stamp its
    identity (as ``instance_id``, or a new one) and write the initial data, in the caller's
    transaction; its instance id."""
    # The template holds the (empty) identity table: no look for it first.
    identity = stamp_identity(conn, spec, owner, table_exists=True, instance_id=instance_id)
    seed(conn, spec, store)
    return identity.instance_id
