"""Where backups are kept: a local directory or an S3 bucket (:mod:`tenantry.backup.s3_storage`),
behind one small interface.

Writes are atomic on both backends: an object appears under its key only once it is complete,
so a backup that failed half-way can never be mistaken for a good one.
"""

from __future__ import annotations

import contextlib
import glob
import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

from tenantry.errors import InvalidInput, NotFound, TenantryError
from tenantry.settings import Settings

if TYPE_CHECKING:
    pass

MIB = 1024 * 1024
COPY_CHUNK = MIB


class StorageError(TenantryError):
    """Backup storage failed for a reason other than configuration or a missing object."""


class Storage(Protocol):
    """A store of backup artifacts under keys like ``billing/2026/11/22/<id>.sql.zst``."""

    kind: str

    def describe(self) -> str:
        """Where backups go, for people to read; never includes credentials."""
        ...

    def location(self, key: str) -> str:
        """The full path or ``s3://`` URL of ``key``."""
        ...

    def put(self, key: str, stream: BinaryIO) -> int:
        """Store ``stream`` (read to EOF) under ``key`` atomically; return the bytes written.

        If anything fails, ``key`` keeps what it held before (or stays absent).
        """
        ...

    def put_bytes(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` atomically."""
        ...

    def open(self, key: str) -> contextlib.AbstractContextManager[BinaryIO]:
        """Stream ``key``'s content; :class:`NotFound` if it does not exist."""
        ...

    def read_bytes(self, key: str) -> bytes:
        """``key``'s whole content; :class:`NotFound` if it does not exist."""
        ...

    def size(self, key: str) -> int | None:
        """``key``'s size in bytes, or None if it does not exist."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is not an error."""
        ...

    def delete_unfinished(self, key: str) -> None:
        """Remove what an interrupted :meth:`put` of ``key`` left behind (a process killed
        mid-upload cannot clean up after itself); ``key`` itself is left as it is."""
        ...

    def keys(self, prefix: str = "") -> list[str]:
        """The keys starting with ``prefix``, sorted."""
        ...


def storage_for(settings: Settings) -> Storage:
    """The S3 bucket if ``TENANTRY_BACKUP_S3_BUCKET`` is set, else the local backup directory."""
    if settings.backup_s3_bucket:
        from tenantry.backup.s3_storage import S3Storage  # boto3 only when S3 is configured

        return S3Storage(
            settings.backup_s3_bucket,
            prefix=settings.backup_s3_prefix,
            endpoint_url=settings.backup_s3_endpoint,
            region=settings.backup_s3_region,
        )
    return LocalStorage(settings.backup_path)


def is_valid_key(key: str) -> bool:
    """Whether ``key`` may name a backup object (what listing a store keeps)."""
    # Parts starting with "." cover "." and ".." and keep hidden names free for temporary files.
    return all(part and not part.startswith(".") for part in key.split("/"))


def check_key(key: str) -> str:
    """``key`` if it may name a backup object; :class:`InvalidInput` otherwise."""
    if not is_valid_key(key):
        raise InvalidInput(
            f"invalid backup key {key!r}.",
            "Keys are relative paths such as 'billing/2026/11/22/<id>.sql.zst', "
            "with no empty parts and no parts starting with '.'.",
        )
    return key


class LocalStorage:
    """Backups as files under ``root``: files mode 0600, directories created 0700."""

    kind = "local"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def describe(self) -> str:
        """The backup directory."""
        return str(self.root)

    def location(self, key: str) -> str:
        """The file path of ``key``."""
        return str(self._path(key))

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, stream: BinaryIO) -> int:
        """Copy ``stream`` to a temporary file beside ``key``'s, fsync it, then rename it."""
        path = self._path(key)
        try:
            _make_dirs(path.parent)
            # mkstemp creates the file with mode 0600.
            fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        except OSError as exc:
            raise StorageError(
                f"cannot write backups to {path.parent}: {exc.strerror}.",
                "Check that TENANTRY_BACKUP_DIR (default $TENANTRY_DATA_DIR/backups) is writable.",
            ) from exc
        written = 0
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := stream.read(COPY_CHUNK):
                    out.write(chunk)
                    written += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)  # without it, a crash could lose the rename itself
        return written

    def put_bytes(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` atomically."""
        self.put(key, io.BytesIO(data))

    @contextlib.contextmanager
    def open(self, key: str) -> Iterator[BinaryIO]:
        """Read ``key``'s file; :class:`NotFound` if it does not exist."""
        path = self._path(key)
        try:
            file = path.open("rb")
        except FileNotFoundError:
            raise NotFound(f"no backup object at {path}.") from None
        with file:
            yield file

    def read_bytes(self, key: str) -> bytes:
        """``key``'s whole content; :class:`NotFound` if it does not exist."""
        with self.open(key) as file:
            return file.read()

    def size(self, key: str) -> int | None:
        """``key``'s size in bytes, or None if it does not exist."""
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            return None

    def delete(self, key: str) -> None:
        """Remove ``key``'s file if it exists."""
        self._path(key).unlink(missing_ok=True)

    def delete_unfinished(self, key: str) -> None:
        """Remove the temporary files of interrupted writes of ``key`` (see :meth:`put`)."""
        path = self._path(key)
        if path.parent.is_dir():
            for temp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
                temp.unlink(missing_ok=True)

    def keys(self, prefix: str = "") -> list[str]:
        """The keys starting with ``prefix``, sorted; unfinished writes are not listed."""
        folder = prefix.rpartition("/")[0]
        start = self._path(folder) if folder else self.root
        if not start.is_dir():
            return []
        found = (
            path.relative_to(self.root).as_posix() for path in start.rglob("*") if path.is_file()
        )
        return sorted(key for key in found if key.startswith(prefix) and is_valid_key(key))


def _make_dirs(directory: Path) -> None:
    # Path.mkdir(parents=True) would give the intermediate directories the default mode.
    missing: list[Path] = []
    while not directory.is_dir():
        missing.append(directory)
        directory = directory.parent
    for path in reversed(missing):
        path.mkdir(mode=0o700, exist_ok=True)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
