"""Backup artifacts: a dump streamed through zstd and SHA-256 into storage, and back.

Nothing is buffered whole: the dump tool's output is read in chunks, compressed, hashed and
handed to the storage as one stream. Reading back hashes the stored bytes again, so a
truncated or altered artifact is caught before anything is restored from it.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any

import zstandard

from tenantry.backup.storage import Storage
from tenantry.errors import TenantryError

Progress = Callable[[int], None]


class CorruptArtifact(TenantryError):
    """A stored artifact does not match what the catalog recorded (size, hash or format)."""


class _Tap(io.RawIOBase):
    """A readable that passes ``source`` through, counting, hashing and reporting bytes."""

    def __init__(
        self, source: IO[bytes], on_read: Progress | None = None, *, hashing: bool = True
    ) -> None:
        self._source = source
        self._on_read = on_read
        self._hashing = hashing
        self.size = 0
        self.sha256 = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        chunk = self._source.read(len(buffer))
        n = len(chunk)
        buffer[:n] = chunk
        self.size += n
        if self._hashing:
            self.sha256.update(chunk)
        if self._on_read is not None and n:
            self._on_read(n)
        return n


@dataclass(frozen=True)
class Written:
    """What went into storage: sizes before and after compression, and the stored hash."""

    raw_bytes: int
    size_bytes: int
    sha256: str


def write(
    storage: Storage,
    key: str,
    dump: IO[bytes],
    *,
    level: int = 3,
    on_progress: Progress | None = None,
) -> Written:
    """Compress ``dump`` with zstd into ``storage`` under ``key``, hashing what is stored."""
    raw = _Tap(dump, on_progress, hashing=False)  # only the stored bytes' hash is kept
    # threads=-1: compression runs on other cores while the dump tool fills the pipe.
    compressor = zstandard.ZstdCompressor(level=level, threads=-1, write_checksum=True)
    compressed = _Tap(compressor.stream_reader(raw, read_size=1 << 20))  # type: ignore[arg-type]
    storage.put(key, io.BufferedReader(compressed, buffer_size=1 << 20))
    return Written(raw.size, compressed.size, compressed.sha256.hexdigest())


def checksum(storage: Storage, key: str, on_progress: Progress | None = None) -> Written:
    """Read a stored artifact end to end: its size and SHA-256 (raw size not known: 0)."""
    with storage.open(key) as stream:
        tap = _Tap(stream, on_progress)
        while tap.read(1 << 20):
            pass
    return Written(0, tap.size, tap.sha256.hexdigest())


def check(storage: Storage, key: str, *, size: int | None, sha256: str | None) -> None:
    """Raise :class:`CorruptArtifact` unless the stored artifact has this size and hash."""
    found = checksum(storage, key)
    if size is not None and found.size_bytes != size:
        raise CorruptArtifact(
            f"artifact {storage.location(key)} has {found.size_bytes} bytes, the catalog "
            f"recorded {size}: it was truncated or replaced.",
            "Do not restore from it; choose another backup (`tenantry backup list`).",
        )
    if sha256 is not None and found.sha256 != sha256:
        raise CorruptArtifact(
            f"artifact {storage.location(key)} has SHA-256 {found.sha256[:16]}…, the catalog "
            f"recorded {sha256[:16]}…: its content changed after it was written.",
            "Do not restore from it; choose another backup (`tenantry backup list`).",
        )


@contextmanager
def opened(
    storage: Storage, key: str, *, sha256: str | None, on_progress: Progress | None = None
) -> Iterator[IO[bytes]]:
    """The decompressed dump of a stored artifact, as a stream.

    The stored bytes are hashed on the way; leaving the block raises
    :class:`CorruptArtifact` if they did not match ``sha256`` (callers restore into a scratch
    or new database first, so a mismatch found at the end has harmed nothing). A damaged
    zstd frame raises as soon as it is read.
    """
    with storage.open(key) as stream:
        tap = _Tap(stream, on_progress)
        reader = zstandard.ZstdDecompressor().stream_reader(tap, read_size=1 << 20)  # type: ignore[arg-type]
        try:
            yield io.BufferedReader(_Checked(reader, storage.location(key)), 1 << 20)
            while tap.read(1 << 20):  # the tool may stop before the frame's very end
                pass
        except zstandard.ZstdError as exc:
            raise CorruptArtifact(
                f"artifact {storage.location(key)} is not a sound zstd stream: {exc}.",
                "Do not restore from it; choose another backup (`tenantry backup list`).",
            ) from None
    if sha256 is not None and tap.sha256.hexdigest() != sha256:
        raise CorruptArtifact(
            f"artifact {storage.location(key)} does not match the SHA-256 in the catalog.",
            "Do not restore from it; choose another backup (`tenantry backup list`).",
        )


class _Checked(io.RawIOBase):
    """Decompressed reads whose zstd errors become :class:`CorruptArtifact`."""

    def __init__(self, reader: Any, where: str) -> None:
        self._reader = reader
        self._where = where

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        try:
            chunk = self._reader.read(len(buffer))
        except zstandard.ZstdError as exc:
            raise CorruptArtifact(
                f"artifact {self._where} is damaged: {exc}.",
                "Do not restore from it; choose another backup (`tenantry backup list`).",
            ) from None
        n = len(chunk)
        buffer[:n] = chunk
        return n
