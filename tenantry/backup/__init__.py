"""Backups: dumping, storing and restoring databases."""
