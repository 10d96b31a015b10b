"""Backup use cases: taking, verifying, restoring and pruning backups, with a policy per
database, and the backup catalog in master.

They take sessions and call the infrastructure in :mod:`tenantry.backup` (dump tools,
artifact format, storage), which knows nothing of master, stores or policies. A new backend's
dump tool goes there; a new thing to do with backups goes here.
"""
