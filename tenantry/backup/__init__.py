"""Backup infrastructure: the tools and the storage, no use cases.

- ``dump_tools/``: dump and restore one database with its own tools (pg_dump/pg_restore,
  mariadb-dump and the mariadb client, SQLite's backup API), one module per backend.
- ``artifacts``: the artifact format (zstd, SHA-256).
- ``storage``: where artifacts live (a local directory, S3).

What to back up, when, with which policy, verifying, restoring and recording it all in the
catalog in master are use cases: they live in :mod:`tenantry.services.backups`.
"""
