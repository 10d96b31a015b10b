"""Master 0015 on every backend: the never-used ``admin`` user role becomes ``owner``, other
roles are kept, and the session tables exist afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Engine, MetaData, Table, inspect, select
from sqlalchemy.engine import URL

from tenantry.db.schemas import master_schema
from tenantry.services import schema_ops
from tests.conftest import DbFactory


def test_master_0015_renames_the_admin_role_to_owner(
    new_database: DbFactory, engines: Callable[[URL], Engine]
) -> None:
    spec = master_schema()
    engine = engines(new_database("master"))
    with engine.begin() as conn:
        schema_ops.migrate(conn, spec, "m", target="0014", acting_app="tenantry", owner="tenantry")
        users = Table("users", MetaData(), autoload_with=conn)
        now = datetime.now(UTC).replace(tzinfo=None)
        for email, role in (("a@example.com", "admin"), ("v@example.com", "viewer")):
            conn.execute(
                users.insert().values(
                    id=uuid.uuid4().hex,
                    email=email,
                    name=email,
                    role=role,
                    is_active=True,
                    created_at=now,
                    updated_at=now,
                )
            )
    with engine.begin() as conn:
        schema_ops.migrate(conn, spec, "m", acting_app="tenantry", owner="tenantry")
    with engine.connect() as conn:
        rows = conn.execute(select(users.c.email, users.c.role).order_by(users.c.email)).all()
        assert [tuple(r) for r in rows] == [("a@example.com", "owner"), ("v@example.com", "viewer")]
        assert {"user_sessions", "login_failures"} <= set(inspect(conn).get_table_names())
