"""Payment processor adapters: verify a webhook's signature, then normalise its event.

Usage, with the raw request body (bytes) and the endpoint's active signing secrets::

    processor = get_processor("stripe")
    processor.verify(body, headers.get(processor.signature_header), secrets)
    event = processor.parse(body)
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from tenantry.billing.processors.base import (
    TOLERANCE_S,
    EventKind,
    NormalizedEvent,
    Processor,
    SignatureError,
)
from tenantry.billing.processors.stripe import STRIPE, StripeProcessor
from tenantry.billing.processors.tilled import TILLED, TilledProcessor

#: Every adapter by name.
PROCESSORS: Final[Mapping[str, Processor]] = MappingProxyType(
    {STRIPE.name: STRIPE, TILLED.name: TILLED}
)


class UnknownProcessorError(KeyError):
    """No adapter has this name. A ``KeyError`` whose message reads like a sentence."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        known = ", ".join(sorted(PROCESSORS))
        return f"unknown payment processor {self.name!r} (known: {known})"


def get_processor(name: str) -> Processor:
    """The adapter called ``name`` (case and surrounding spaces ignored).

    Raises :class:`UnknownProcessorError` (a ``KeyError``) for any other name.
    """
    try:
        return PROCESSORS[name.strip().lower()]
    except KeyError:
        raise UnknownProcessorError(name) from None


__all__ = [
    "PROCESSORS",
    "STRIPE",
    "TILLED",
    "TOLERANCE_S",
    "EventKind",
    "NormalizedEvent",
    "Processor",
    "SignatureError",
    "StripeProcessor",
    "TilledProcessor",
    "UnknownProcessorError",
    "get_processor",
]
