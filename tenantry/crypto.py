"""Encryption keys for stored secrets: MultiFernet over TENANTRY_SECRET_KEYS or the key file."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, MultiFernet

from tenantry.errors import ConfigurationError
from tenantry.settings import Settings


def ensure_key_file(path: Path) -> bool:
    """Create ``path`` holding one new Fernet key, readable by the owner only (0600).

    Returns False, changing nothing, when the file exists already.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as handle:
        handle.write(Fernet.generate_key() + b"\n")
    return True


def _parse_keys(text: str, source: str) -> list[Fernet]:
    keys: list[Fernet] = []
    for n, raw in enumerate(k.strip() for k in text.replace("\n", ",").split(",")):
        if not raw:
            continue
        try:
            keys.append(Fernet(raw))
        except ValueError:
            raise ConfigurationError(
                f"key #{n + 1} in {source} is not a valid Fernet key.",
                "Each key is 32 url-safe base64-encoded bytes, as Fernet.generate_key() makes.",
            ) from None
    return keys


def load_keys(settings: Settings) -> MultiFernet:
    """The keys that protect stored secrets; the first encrypts, all decrypt."""
    if settings.secret_keys is not None:
        keys = _parse_keys(settings.secret_keys.get_secret_value(), "TENANTRY_SECRET_KEYS")
        source = "TENANTRY_SECRET_KEYS"
    elif settings.key_file.is_file():
        keys = _parse_keys(settings.key_file.read_text(), str(settings.key_file))
        source = str(settings.key_file)
    else:
        raise ConfigurationError(
            "no encryption key is configured.",
            "Run `tenantry init` to create a key file, or set TENANTRY_SECRET_KEYS.",
        )
    if not keys:
        raise ConfigurationError(f"{source} holds no key.", "Run `tenantry init` again.")
    return MultiFernet(keys)
