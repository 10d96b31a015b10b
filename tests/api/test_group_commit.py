"""Group commit of webhook deliveries (tenantry.api.group_commit): batches written at once
on a server database still store each event once and answer every delivery with its row."""

from __future__ import annotations

import asyncio
import json
import uuid

from sqlalchemy import func, select

from tenantry.api.group_commit import IngestWriter
from tenantry.db.billing.models import BillingWebhook
from tenantry.services.billing.webhook_intake import Delivery, Ingested
from tests.api.conftest import BillingApi


def _delivery(event_id: str) -> Delivery:
    payload = {"id": event_id, "object": "event", "type": "invoice.paid", "data": {}}
    return Delivery(uuid.uuid4(), "acme", "stripe", event_id, "invoice.paid", json.dumps(payload))


def test_concurrent_batches_store_each_event_once_and_answer_every_delivery(
    billing_api: BillingApi,
) -> None:
    # Each event is delivered three times at once, as a processor retrying a slow answer
    # does: the three land in one batch or in batches written side by side.
    events = [f"evt_group_{i:03d}" for i in range(120)]
    deliveries = [_delivery(event_id) for _ in range(3) for event_id in events]
    writer = IngestWriter(billing_api.platform.billing_engine)

    async def deliver_all() -> list[Ingested]:
        return list(await asyncio.gather(*(writer.store(d) for d in deliveries)))

    try:
        answers = asyncio.run(deliver_all())
    finally:
        writer.close()

    by_event: dict[str, list[Ingested]] = {}
    for answer in answers:
        by_event.setdefault(answer.event_id, []).append(answer)
    assert sorted(by_event) == events
    for event_id, three in by_event.items():
        assert len({a.id for a in three}) == 1, f"{event_id} was answered with two rows"
        assert [a.duplicate for a in three].count(False) == 1, event_id
    with billing_api.platform.billing_sessions() as session:
        stored = session.scalar(select(func.count()).where(BillingWebhook.event_id.in_(events)))
        ids = set(
            session.scalars(select(BillingWebhook.id).where(BillingWebhook.event_id.in_(events)))
        )
    assert stored == len(events)
    assert ids == {a.id for a in answers}
