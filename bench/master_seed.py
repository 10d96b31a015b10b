"""Thousands of stores written straight into master (bulk inserts, no tenant databases), for
benches and tests of the paths that read master at fleet scale (one home: `bench/scale.py`
imports it as `master_seed`, the tests through `tests/master_rows.py`)."""

from __future__ import annotations

import uuid

from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from tenantry.crypto import SecretBox
from tenantry.db.master.models import DatabaseStatus, IntegrationConfig, Store

BATCH = 2000


def slug_of(n: int) -> str:
    """The slug of the ``n``-th seeded store (sorts in seeding order)."""
    return f"s-{n:05d}"


def seed_stores(
    sessions: sessionmaker[Session],
    count: int,
    *,
    head: str,
    behind_every: int = 10,
    box: SecretBox | None = None,
) -> None:
    """``count`` active stores, each with an active connection that is never opened (a SQLite
    file; with ``box``, a PostgreSQL database whose password is sealed, as on a server);
    every ``behind_every``-th is on revision ``old`` instead of ``head``."""
    sealed = box.seal("never-used") if box is not None else None
    with sessions.begin() as session:
        for start in range(0, count, BATCH):
            ids = [uuid.uuid4() for _ in range(start, min(count, start + BATCH))]
            session.execute(
                insert(Store),
                [
                    {
                        "id": store_id,
                        "name": f"Store {start + i}",
                        "slug": slug_of(start + i),
                        "database_status": DatabaseStatus.ACTIVE,
                        "schema_revision": "old" if (start + i) % behind_every == 0 else head,
                    }
                    for i, store_id in enumerate(ids)
                ],
            )
            session.execute(
                insert(IntegrationConfig),
                [
                    {
                        "store_id": store_id,
                        "integration_type": "postgresql" if sealed else "sqlite",
                        "config_data": _config(store_id, sealed is not None),
                        "secret_encrypted": sealed,
                        "instance_id": str(store_id),
                        "is_active": True,
                    }
                    for store_id in ids
                ],
            )


def _config(store_id: uuid.UUID, server: bool) -> dict[str, object]:
    if not server:
        return {"engine": "sqlite", "path": f"/nonexistent/{store_id}.db"}
    return {
        "engine": "postgresql",
        "driver": "postgresql+psycopg",
        "host": "db.invalid",
        "port": 5432,
        "database": f"t_{store_id.hex}",
        "username": f"t_{store_id.hex[:12]}",
    }
