"""The registry of sealed columns that key rotation walks: nothing secret is left out of it.

A column whose name suggests a secret must either be declared with ``sealed_column()`` (and
so be resealed by ``tenantry keys rotate``) or be listed below with the reason it holds no
secret. Adding a secret column without the marker fails here, before any rotation forgets it.
"""

from __future__ import annotations

import re

from sqlalchemy import Text

from tenantry.crypto import SEALED, sealed_columns
from tenantry.db.schemas import SchemaSpec, billing_schema, master_schema, tenant_schema
from tenantry.services.key_rotation import sealed_schemas
from tenantry.settings import Settings

#: Names that suggest a secret, or something already encrypted.
LOOKS_SECRET = re.compile(
    r"passw|pwd|secret|token|credential|private|encrypt|cipher|seal|salt|signing|dsn|url"
    r"|(^|_)(api_)?key($|_)"
)

#: Columns whose names look secret but hold none, with the reason.
NOT_SECRET = {
    "master:users.password_hash": "a one-way hash; nothing to decrypt",
    "master:api_keys.key_hash": "a one-way hash; the key is shown once and never stored",
    "master:user_sessions.token_hash": "a one-way hash; the session token is only in the cookie",
    "master:integration_configs.credentials_rotated_at": "when the password last changed",
    "master:backups.artifact_key": "where the artifact is in its storage, not a credential",
    "master:backups.manifest_key": "where the manifest is in its storage, not a credential",
    "master:platform_settings.key": "a setting's name",
    "master:store_domains.token": "published by the operator (DNS TXT or a web page) to prove "
    "the domain is theirs; it opens nothing",
    "master:billing_transactions.invoice_url": "a processor's public invoice link",
    "billing:billing_idempotency_keys.key": "a client's Idempotency-Key header, not a secret",
    "tenant:seo_settings.canonical_url": "a public page address",
    "tenant:settings.key": "a setting's name",
    "tenant:media_library.storage_key": "where a file is in its storage, not a credential",
}


def _all_schemas() -> tuple[SchemaSpec, ...]:
    return (master_schema(), billing_schema(), tenant_schema(Settings().tenant_schema))


def test_every_column_that_looks_secret_is_sealed_or_explained() -> None:
    unexplained: list[str] = []
    seen: set[str] = set()
    for spec in _all_schemas():
        for table in spec.metadata.sorted_tables:
            for column in table.columns:
                name = f"{spec.role.value}:{table.name}.{column.name}"
                if not LOOKS_SECRET.search(column.name):
                    continue
                seen.add(name)
                if column.info.get(SEALED) is not True and name not in NOT_SECRET:
                    unexplained.append(name)
    assert unexplained == [], (
        "declare these with tenantry.crypto.sealed_column() so key rotation reseals them, "
        "or add them to NOT_SECRET with the reason they hold no secret"
    )
    assert set(NOT_SECRET) <= seen, "NOT_SECRET names a column that no longer exists"


def test_sealed_columns_live_only_where_rotation_looks() -> None:
    rotated = {spec.role for spec in sealed_schemas()}
    for spec in _all_schemas():
        columns = sealed_columns(spec.metadata)
        if spec.role not in rotated:
            assert columns == [], f"{spec.role.value} holds sealed columns rotation never walks"
        for column in columns:
            assert isinstance(column.type, Text), f"{column} holds a Fernet token: Text"


def test_registry_lists_the_known_secrets_of_master_and_billing() -> None:
    found = {
        spec.role.value: sorted(f"{c.table.name}.{c.name}" for c in sealed_columns(spec.metadata))
        for spec in sealed_schemas()
    }
    assert found == {
        "master": [
            "database_servers.admin_url_encrypted",
            "database_servers.pooler_url_encrypted",
            "import_sources.source_url",
            "integration_configs.secret_encrypted",
            "provisioning_jobs.secret_encrypted",
            "spare_databases.login_secret_encrypted",
        ],
        "billing": ["billing_processor_secrets.secret_encrypted"],
    }
