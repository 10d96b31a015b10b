"""Pruning backups by their retention policies: one short transaction per backup.

The decisions come from :func:`tenantry.services.backups.retention.plan_prune`; each pruned
backup's artifact is deleted and its catalog row marked ``pruned`` (the row stays as history),
committed one backup at a time so an interruption leaves every backup either kept or pruned.
"""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session, sessionmaker

from tenantry.backup.storage import Storage
from tenantry.db.engines import writer_sessions
from tenantry.services.backups.retention import Decision, prune_one


def prune(
    sessions: sessionmaker[Session], storage: Storage, decisions: list[Decision]
) -> list[uuid.UUID]:
    """Delete the artifacts of the decisions marked ``prune``; the pruned backups' ids."""
    pruned: list[uuid.UUID] = []
    for decision in decisions:
        if not decision.prune:
            continue
        with writer_sessions(sessions).begin() as session:
            if prune_one(session, storage, decision):
                pruned.append(decision.backup_id)
    return pruned
