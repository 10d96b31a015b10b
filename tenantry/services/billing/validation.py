"""Edge checks for billing input: currencies, emails, ids, amounts, and no raw card data."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from tenantry.errors import InvalidInput

# Active ISO 4217 codes.
CURRENCIES = frozenset(
    """
        AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD
        BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP BYN
        BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF
        DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS
        GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR
        IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW
        KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA
        MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD
        NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN
        PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD
        SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT
        TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VES
        VND VUV WST XAF XCD XOF XPF YER ZAR ZMW ZWL
    """.split()  # noqa: SIM905
)
MAX_AMOUNT_MINOR = 10**15  # far beyond any real invoice, far below a BIGINT
MAX_TRIAL_DAYS = 730
MAX_QUANTITY = 10_000  # of a subscription or an order line
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,254}$")
_APP = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_DIGIT_RUN = re.compile(r"(?:\d[ -]?){13,19}")


def currency(code: str) -> str:
    """An ISO 4217 code, upper-cased."""
    code = (code or "").strip().upper()
    if code not in CURRENCIES:
        raise InvalidInput(f"unknown currency {code!r}.", "Use an ISO 4217 code such as USD.")
    return code


def amount(value: int, *, what: str = "amount") -> int:
    """A non-negative integer of minor units (cents): never a float."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{what} must be an integer number of minor units (cents).")
    if not 0 <= value <= MAX_AMOUNT_MINOR:
        raise InvalidInput(f"{what} must be between 0 and {MAX_AMOUNT_MINOR} minor units.")
    return value


def email(value: str | None) -> str | None:
    """A plausible email address, lower-cased domain; None stays None."""
    if value is None:
        return None
    value = value.strip()
    if not _EMAIL.fullmatch(value) or len(value) > 255:
        raise InvalidInput(f"invalid email address {value!r}.")
    local, _, domain = value.rpartition("@")
    return f"{local}@{domain.lower()}"


def external_id(value: str, *, what: str = "external_customer_id") -> str:
    """An id given by an app: 1 to 255 characters of letters, digits and ``_.:-``."""
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise InvalidInput(
            f"invalid {what} {value!r}.",
            "Use 1 to 255 letters, digits, '_', '.', ':' or '-'.",
        )
    return value


def app_id(value: str) -> str:
    """An app's id: lowercase letters, digits, '_' and '-'."""
    if not isinstance(value, str) or not _APP.fullmatch(value):
        raise InvalidInput(
            f"invalid app id {value!r}.", "Use up to 64 lowercase letters, digits, '_' or '-'."
        )
    return value


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2 == 1:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def looks_like_card_number(text: str) -> bool:
    """Whether ``text`` holds 13 to 19 digits (spaces or dashes allowed) passing the Luhn check."""
    for match in _DIGIT_RUN.finditer(text):
        digits = re.sub(r"\D", "", match.group())
        for size in range(min(19, len(digits)), 12, -1):
            for start in range(len(digits) - size + 1):
                if _luhn(digits[start : start + size]):
                    return True
    return False


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, int) and not isinstance(value, bool):
        yield str(value)


def no_card_data(value: Any, *, where: str) -> None:
    """Refuse anything that looks like a card number (seed 002: no raw card data, PCI DSS)."""
    for text in _strings(value):
        if looks_like_card_number(text):
            raise InvalidInput(
                f"{where} contains what looks like a card number; raw card data is never stored.",
                "Send the processor's token or the last four digits instead.",
            )
