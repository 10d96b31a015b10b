"""HMAC-SHA256 webhook signatures in the ``t=…,v1=…`` header format Stripe and Tilled share.

The signed payload is the timestamp exactly as sent, a dot, and the raw request body. A
header may carry several ``v1`` signatures (one per active secret while the processor rotates
them) and signatures of other schemes (``v0`` …), which are ignored.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from dataclasses import dataclass

from tenantry.billing.processors.base import TOLERANCE_S, SignatureError

#: The only scheme checked; ``v0`` (Stripe's test scheme) and unknown schemes are ignored.
SCHEME = "v1"

# ASCII digits only (int() would also take "+5", " 5", "1_0" and other scripts' digits), and
# short enough that int() never meets Python's limit on long decimal strings.
_TIMESTAMP = re.compile(r"[0-9]{1,20}")


@dataclass(frozen=True)
class SignatureHeader:
    """A parsed signature header: the timestamp as sent, its value, and the v1 signatures."""

    timestamp_text: str
    timestamp: int
    signatures: tuple[str, ...]


def parse_header(header: str | None, header_name: str) -> SignatureHeader:
    """Split a ``t=…,v1=…[,v1=…][,v0=…]`` header, or raise :class:`SignatureError`.

    ``header_name`` only names the header in the reasons.
    """
    if header is None or not header.strip():
        raise SignatureError(f"missing {header_name} header")
    timestamp_text: str | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            raise SignatureError(f"malformed {header_name} header")
        if key == "t":
            if timestamp_text is not None:
                raise SignatureError(f"malformed {header_name} header: more than one timestamp")
            timestamp_text = value
        elif key == SCHEME and value:
            signatures.append(value)
    if timestamp_text is None:
        raise SignatureError(f"malformed {header_name} header: no timestamp")
    if not _TIMESTAMP.fullmatch(timestamp_text):
        raise SignatureError(f"malformed {header_name} header: timestamp is not an integer")
    if not signatures:
        raise SignatureError(f"malformed {header_name} header: no {SCHEME} signature")
    return SignatureHeader(timestamp_text, int(timestamp_text), tuple(signatures))


def expected_signature(secret: str, timestamp_text: str, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``"{timestamp}." + body`` under ``secret``."""
    signed_payload = timestamp_text.encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), signed_payload, hashlib.sha256).hexdigest()


def verify_header(
    body: bytes,
    header: str | None,
    secrets: list[str],
    *,
    header_name: str,
    units_per_second: int,
    now: float | None = None,
) -> None:
    """Raise :class:`SignatureError` unless ``header`` signs ``body`` with one of ``secrets``
    at a time within :data:`TOLERANCE_S` of ``now`` (seconds; default the clock), either way.

    ``units_per_second`` is what the header's ``t`` counts: 1 for seconds (Stripe), 1000 for
    milliseconds (Tilled). Every ``v1`` signature is compared, in constant time, with the
    expected signature of every secret, so either of two rotating secrets passes.
    """
    parsed = parse_header(header, header_name)
    keys = [secret for secret in secrets if secret]
    if not keys:
        # An empty key would let anyone sign; an empty list is a configuration mistake.
        raise SignatureError("no webhook signing secret configured")
    matched = False
    for secret in keys:
        expected = expected_signature(secret, parsed.timestamp_text, body).encode("ascii")
        for candidate in parsed.signatures:
            # Bitwise or, not ``any``: compare everything, whatever matches first.
            matched |= hmac.compare_digest(expected, candidate.encode("utf-8", "backslashreplace"))
    if not matched:
        raise SignatureError("no signature matches")
    now_units = (time.time() if now is None else now) * units_per_second
    if abs(now_units - parsed.timestamp) > TOLERANCE_S * units_per_second:
        raise SignatureError(f"timestamp outside the {TOLERANCE_S} s tolerance")
