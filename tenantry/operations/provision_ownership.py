"""Which database a create-new provisioning job made: the one carrying the id it recorded.

A job records that it creates its store's database before making it (so a crash right after
still knows), in the same master write naming the instance id the database will carry: the
claimed spare's id, or else the job's own id. Every stamp the job makes uses that id. So a
database found at the store's name later (a resumed job, a failed job's cleanup, a rename
that met a taken name, a later job of the store taking over what this one left) is the job's
only when it carries that id, or carries no identity
yet and holds nothing but the schema's own tables (a template copy or a build cut short
before its stamp). Anything else there is someone else's: never taken as the store's, never
stamped, never dropped.
"""

from __future__ import annotations

from sqlalchemy.engine import URL

from tenantry.db import admin
from tenantry.db.identity import read_identity, user_tables
from tenantry.db.master.models import ProvisioningJob
from tenantry.db.schemas import SchemaSpec
from tenantry.db.server_connections import SERVERS
from tenantry.services.provisioning_records import recorded_instance


def made_by(job: ProvisioningJob, url: URL, spec: SchemaSpec) -> bool:
    """Whether the database at the store's ``url`` is the one ``job`` made: False when no
    database is there; for a job that recorded no id (an earlier version), True when one is
    (what was assumed then)."""
    if not admin.database_exists(url):
        return False
    recorded = recorded_instance(job)
    if recorded is None:
        return True
    with SERVERS.connect(url) as conn:
        found = read_identity(conn)
        if found is not None:
            return found.instance_id == recorded
        own = {table.name for table in spec.metadata.sorted_tables}
        return set(user_tables(conn)) <= own
