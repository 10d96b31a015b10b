"""Backups: taking, verifying, restoring and pruning them, with a policy per database."""
