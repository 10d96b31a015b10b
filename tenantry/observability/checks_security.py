"""Doctor checks of secrets: every app and processor in use has an active webhook signing
secret, and the key file is readable by its owner only."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from typing import Any

from sqlalchemy import CompoundSelect, select, union

from tenantry.db.billing.models import (
    BillingCustomer,
    BillingPayment,
    BillingProcessorSecret,
    BillingSubscription,
    BillingWebhook,
)
from tenantry.observability.doctor import Check, DoctorContext, Status, ok


def webhook_secrets(context: DoctorContext) -> Iterator[Check]:
    """Each (app, processor) with billing data, received webhooks or a (retired) secret has
    an active signing secret: without one every delivery is refused with 401 and the
    processor's retries run out."""
    in_use: CompoundSelect[Any] = union(
        select(BillingWebhook.app_id, BillingWebhook.processor),
        select(BillingProcessorSecret.app_id, BillingProcessorSecret.processor),
        *(
            select(model.app_id, model.processor).where(model.processor.is_not(None))
            for model in (BillingCustomer, BillingSubscription, BillingPayment)
        ),
    )
    with context.sessions("billing")() as session:
        pairs = {(str(row[0]), str(row[1])) for row in session.execute(in_use)}
        active = {
            (str(a), str(p))
            for a, p in session.execute(
                select(BillingProcessorSecret.app_id, BillingProcessorSecret.processor)
                .where(BillingProcessorSecret.retired_at.is_(None))
                .distinct()
            )
        }
    missing = sorted(pairs - active)
    for app_id, processor in missing:
        yield Check(
            f"webhook secret {app_id}/{processor}",
            Status.CRITICAL,
            f"app {app_id!r} has billing data or webhooks from {processor} but no active "
            "signing secret: its deliveries are refused",
            f"tenantry billing secrets add {app_id} --processor {processor} "
            "(the endpoint's signing secret from the processor's dashboard)",
        )
    if not missing:
        yield ok(
            "webhook secrets",
            f"{len(pairs)} app/processor pair(s) in use, each with an active secret"
            if pairs
            else "no app receives webhooks yet",
        )


def key_file(context: DoctorContext) -> Iterator[Check]:
    """The key file (when keys come from it) is a file only its owner may read (0600)."""
    settings = context.settings
    path = settings.key_file
    if settings.secret_keys is not None:
        yield ok("key file", "keys come from TENANTRY_SECRET_KEYS")
        return
    if not path.is_file():
        yield Check(
            "key file",
            Status.CRITICAL,
            f"{path} does not exist and TENANTRY_SECRET_KEYS is not set: stored secrets "
            "cannot be read",
            "tenantry init (for a new installation), or restore the key file from your backup",
        )
        return
    if context.box is None:
        yield Check(
            "key file",
            Status.CRITICAL,
            f"the keys in {path} cannot be read: {context.box_problem}",
            "Restore the key file from your backup (its keys decrypt every stored secret)",
        )
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        yield Check(
            "key file",
            Status.WARNING,
            f"{path} has mode {mode:04o}: others than its owner may read the encryption keys",
            f"chmod 600 {path}",
        )
    else:
        yield ok("key file", f"{path} has mode {mode:04o}")
