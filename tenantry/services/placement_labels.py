"""Placement labels and capacity of servers and residency labels of stores: checked values.

Values come from people (``--region eu``, ``--max-bytes 50GB``) and are checked here once for
the CLI and the API; ``none`` clears a label or a bound.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy.orm import Session

from tenantry.db.master.models import DatabaseServer
from tenantry.errors import InvalidInput
from tenantry.services import audit

_LABEL = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?i?b?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5}
#: The largest byte bound (4 PiB; the API's too): exact as a float, far past any server.
MAX_BYTES = 2**52
#: The largest store-count bound (an Integer column).
MAX_TENANTS = 2**31 - 1
#: What clears a label or a bound.
NONE = "none"


@dataclass(frozen=True)
class Unchanged:
    """A setting left as it is (the option was not given)."""


UNCHANGED = Unchanged()


def label(value: str | None, *, field: str) -> str | None:
    """A region or tier label: lowercase letters, digits and hyphens; ``none``/``None``: unset."""
    if value is None or value == NONE:
        return None
    if not _LABEL.fullmatch(value):
        raise InvalidInput(
            f"{field} {value!r} is not a valid label.",
            "Use 1 to 64 lowercase letters, digits and hyphens, e.g. eu or eu-west-1 "
            f"(or {NONE} to clear it).",
        )
    return value


def size_bytes(value: str | int | None, *, field: str) -> int | None:
    """A byte count from ``50GB``, ``1.5T``, ``200MiB`` or a plain number (binary units);
    ``none``/``None``: no bound."""
    if value is None or value == NONE:
        return None
    if isinstance(value, int):
        found = value
    else:
        match = _SIZE.fullmatch(value)
        if match is None:
            raise InvalidInput(
                f"{field} {value!r} is not a size.",
                f"Give bytes or a number with a unit, e.g. 500MB, 50GB, 2TB (or {NONE}).",
            )
        found = int(float(match.group(1)) * _UNITS[match.group(2)[:1].lower()])
    if not 1 <= found <= MAX_BYTES:
        raise InvalidInput(
            f"{field} must be between 1 byte and 4 PiB.", f"Give {NONE} for no bound."
        )
    return found


def tenant_count(value: str | int | None, *, field: str) -> int | None:
    """A store count bound (at least 0: a server that takes none); ``none``: no bound."""
    if value is None or value == NONE:
        return None
    try:
        found = int(value)
    except ValueError:
        raise InvalidInput(
            f"{field} {value!r} is not a number.", f"Give a whole number, or {NONE} for no bound."
        ) from None
    if not 0 <= found <= MAX_TENANTS:
        raise InvalidInput(f"{field} must be 0 to {MAX_TENANTS}.", f"Give {NONE} for no bound.")
    return found


def configure_server(
    session: Session,
    server: DatabaseServer,
    *,
    region: str | Unchanged | None = UNCHANGED,
    tier: str | Unchanged | None = UNCHANGED,
    max_tenants: int | Unchanged | None = UNCHANGED,
    max_bytes: int | Unchanged | None = UNCHANGED,
    accepting: bool | Unchanged = UNCHANGED,
    actor: str,
) -> dict[str, object]:
    """Change ``server``'s labels and capacity (values already checked); audited. Returns
    what changed. Stores already there stay: a label change is checked by the next move."""
    changes: dict[str, object] = {}
    wanted = {
        "region": region,
        "tier": tier,
        "max_tenants": max_tenants,
        "max_bytes": max_bytes,
        "accepting": accepting,
    }
    for name, value in wanted.items():
        if isinstance(value, Unchanged) or getattr(server, name) == value:
            continue
        setattr(server, name, value)
        changes[name] = value
    if changes:
        session.flush()
        audit.record(
            session,
            actor=actor,
            action="server.set",
            target_type="database_server",
            target_id=server.name,
            details=changes,
        )
    return changes
