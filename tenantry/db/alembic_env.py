"""The body of every role's Alembic ``env.py``: migrations are driven from code, not alembic.ini.

``tenantry.db.migrations`` builds the Alembic ``Config`` and puts the schema spec (and, online,
the connection) into ``config.attributes``; a plug-in's ``env.py`` is just::

    from tenantry.db.alembic_env import run
    run()
"""

from __future__ import annotations

from typing import Any

from alembic import context

from tenantry.db.identity import is_tenantry_table
from tenantry.db.schemas import SchemaSpec


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Leave tenantry's own tables (identity, versions) out of autogenerate and drift checks."""
    return not (type_ == "table" and name is not None and is_tenantry_table(name))


def configure_options(spec: SchemaSpec) -> dict[str, Any]:
    """The migration-context options shared by migrations and drift checks."""
    return {
        "target_metadata": spec.metadata,
        "version_table": spec.version_table,
        "include_object": include_object,
        "compare_type": True,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        "render_as_batch": True,
    }


def run() -> None:
    """Run the migrations Alembic asked for, online on the given connection or offline as SQL."""
    config = context.config
    spec: SchemaSpec = config.attributes["spec"]
    options = configure_options(spec)
    if context.is_offline_mode():
        context.configure(url=config.attributes["url"], literal_binds=True, **options)
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes["connection"]
    context.configure(connection=connection, **options)
    with context.begin_transaction():
        context.run_migrations()
