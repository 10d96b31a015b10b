"""Encryption keys for stored secrets: MultiFernet over TENANTRY_SECRET_KEYS or the key file.

Every column that stores a token of :class:`SecretBox` is declared with :func:`sealed_column`,
and :func:`sealed_columns` finds them by walking a role's metadata: key rotation reseals
exactly what this registry lists, so a new encrypted column cannot be forgotten by it.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import Column, MetaData, Text
from sqlalchemy.orm import MappedColumn, mapped_column

from tenantry.errors import ConfigurationError
from tenantry.settings import Settings

#: The ``Column.info`` key marking a column whose values are tokens of :class:`SecretBox`.
SEALED = "sealed"


def sealed_column() -> MappedColumn[Any]:
    """A mapped column holding a :class:`SecretBox` token, registered for key rotation.

    Nullability follows the ``Mapped[...]`` annotation, as for any ``mapped_column``.
    """
    return mapped_column(Text, info={SEALED: True})


def sealed_columns(metadata: MetaData) -> list[Column[Any]]:
    """Every column of ``metadata`` declared with :func:`sealed_column`, in table order."""
    return [
        column
        for table in metadata.sorted_tables
        for column in table.columns
        if column.info.get(SEALED) is True
    ]


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


def write_key_file(path: Path, keys: list[bytes]) -> None:
    """Replace the key file atomically with ``keys`` (first = primary), mode 0600."""
    fd, tmp = tempfile.mkstemp(prefix=".secret.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(b"".join(k.strip() + b"\n" for k in keys))
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _split(text: str) -> list[str]:
    return [k.strip() for k in text.replace("\n", ",").split(",") if k.strip()]


def _parse_keys(text: str, source: str) -> list[Fernet]:
    keys: list[Fernet] = []
    for n, raw in enumerate(_split(text)):
        try:
            keys.append(Fernet(raw))
        except ValueError:
            raise ConfigurationError(
                f"key #{n + 1} in {source} is not a valid Fernet key.",
                "Each key is 32 url-safe base64-encoded bytes, as Fernet.generate_key() makes.",
            ) from None
    return keys


def raw_keys(settings: Settings) -> tuple[list[bytes], str]:
    """The configured keys as bytes, primary first, and where they came from."""
    if settings.secret_keys is not None:
        text, source = settings.secret_keys.get_secret_value(), "TENANTRY_SECRET_KEYS"
    elif settings.key_file.is_file():
        text, source = settings.key_file.read_text(), str(settings.key_file)
    else:
        raise ConfigurationError(
            "no encryption key is configured.",
            "Run `tenantry init` to create a key file, or set TENANTRY_SECRET_KEYS.",
        )
    _parse_keys(text, source)  # validates
    keys = [k.encode() for k in _split(text)]
    if not keys:
        raise ConfigurationError(f"{source} holds no key.", "Run `tenantry init` again.")
    return keys, source


def _file_stamp(path: Path) -> tuple[int, int, int] | None:
    """What changes when the key file is replaced or written (None: it cannot be read)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def load_keys(settings: Settings) -> MultiFernet:
    """The keys that protect stored secrets; the first encrypts, all decrypt."""
    keys, _ = raw_keys(settings)
    return MultiFernet([Fernet(k) for k in keys])


class SecretBox:
    """Seals and opens the secrets tenantry stores (passwords, admin URLs).

    A box made from the key file follows the file: when `tenantry keys rotate` replaces it,
    the next seal or open re-reads it, so running API servers and workers seal under the new
    primary key and open what was resealed, even once the old keys are retired.
    """

    def __init__(self, keys: MultiFernet, *, key_file: Path | None = None) -> None:
        self._keys = keys
        self._key_file = key_file
        # Unknown until first use, which reads the file once more: a rotation that replaced
        # it between loading the keys and now is not missed.
        self._seen: tuple[int, int, int] | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        """The box for the configured keys (following the key file when that is their source)."""
        key_file = settings.key_file if settings.secret_keys is None else None
        return cls(load_keys(settings), key_file=key_file)

    @property
    def _current(self) -> MultiFernet:
        """The keys, re-read first if the key file was replaced since they were loaded."""
        if self._key_file is None:
            return self._keys
        stamp = _file_stamp(self._key_file)
        if stamp is not None and stamp != self._seen:
            with self._lock:
                try:
                    text = self._key_file.read_text()
                    keys = _parse_keys(text, str(self._key_file))
                except (OSError, ConfigurationError):
                    return self._keys  # a file being edited by hand: keep the loaded keys
                if keys:
                    self._keys, self._seen = MultiFernet(keys), stamp
        return self._keys

    def seal(self, plaintext: str) -> str:
        """Encrypt with the primary key."""
        return self._current.encrypt(plaintext.encode()).decode()

    def open(self, token: str) -> str:
        """Decrypt with any configured key."""
        try:
            return self._current.decrypt(token.encode()).decode()
        except InvalidToken:
            raise ConfigurationError(
                "a stored secret cannot be decrypted with the configured keys.",
                "A key that encrypted it was removed: put it back in TENANTRY_SECRET_KEYS "
                "or the key file (after the primary key).",
            ) from None

    def can_open(self, token: str) -> bool:
        """Whether any configured key decrypts ``token`` (the plaintext is not kept)."""
        try:
            self._current.decrypt(token.encode())
        except InvalidToken:
            return False
        return True

    def reseal(self, token: str) -> str:
        """Re-encrypt a token under the primary key (for key rotation)."""
        try:
            return self._current.rotate(token.encode()).decode()
        except InvalidToken:
            raise ConfigurationError(
                "a stored secret cannot be decrypted with the configured keys; nothing was "
                "re-encrypted.",
                "Put back the key that encrypted it before rotating.",
            ) from None
