"""Backup storage on a local directory and on S3 (a moto server): round trips, atomicity, errors."""

from __future__ import annotations

import hashlib
import io
import socket
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tenantry.backup.s3_storage import S3_PART_SIZE, S3Storage
from tenantry.backup.storage import LocalStorage, Storage, StorageError, storage_for
from tenantry.errors import ConfigurationError, InvalidInput, NotFound
from tenantry.settings import load_settings
from tests.backup.conftest import SECRET_KEY, use_fake_credentials

MIB = 1024 * 1024
BIG = 40 * MIB  # three 16 MiB parts on S3
KEY = "billing/2026/11/22/0001.sql.zst"


class DumpFailed(Exception):
    """Stands for a dump that dies half-way."""


def chunks(total: int, fail_after: int | None = None) -> Iterator[bytes]:
    """``total`` bytes in distinct 1 MiB chunks, cheap to make; raise after ``fail_after``."""
    block = bytes(range(256)) * (MIB // 256)
    sent = 0
    while sent < total:
        if fail_after is not None and sent >= fail_after:
            raise DumpFailed("the dump died")
        chunk = sent.to_bytes(8, "big") + block[8 : min(MIB, total - sent)]
        sent += len(chunk)
        yield chunk


class _ChunkReader(io.RawIOBase):
    def __init__(self, source: Iterator[bytes]) -> None:
        self._source = source
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            self._pending = next(self._source, b"")
            if not self._pending:
                return 0
        size = min(len(buffer), len(self._pending))
        memoryview(buffer).cast("B")[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


def reader(source: Iterator[bytes]) -> io.BufferedReader:
    """A non-seekable binary stream over ``source``, like a pipe from a dump program."""
    return io.BufferedReader(_ChunkReader(source))


def test_multipart_stream_round_trip(storage: Storage) -> None:
    expected = hashlib.sha256(b"".join(chunks(BIG))).hexdigest()
    assert storage.put(KEY, reader(chunks(BIG))) == BIG
    assert storage.size(KEY) == BIG
    digest, read = hashlib.sha256(), 0
    with storage.open(KEY) as stream:
        while block := stream.read(MIB):
            digest.update(block)
            read += len(block)
    assert (read, digest.hexdigest()) == (BIG, expected)
    if isinstance(storage, S3Storage):
        head = storage.client.head_object(Bucket=storage.bucket, Key=f"backups/{KEY}")
        parts = -(-BIG // S3_PART_SIZE)
        assert head["ETag"].endswith(f'-{parts}"')  # really a multipart upload


def test_small_objects_listing_and_replacing(storage: Storage) -> None:
    for key in ("master/2026/01/02/b.sql.zst", KEY, "billing/2026/11/3/c.json"):
        storage.put_bytes(key, key.encode())
    assert storage.read_bytes(KEY) == KEY.encode()
    assert storage.size(KEY) == len(KEY)
    assert storage.keys() == [
        "billing/2026/11/22/0001.sql.zst",
        "billing/2026/11/3/c.json",
        "master/2026/01/02/b.sql.zst",
    ]
    assert storage.keys("billing/") == [KEY, "billing/2026/11/3/c.json"]
    assert storage.keys("billing/2026/11/2") == [KEY]
    assert storage.keys("tenants/") == []
    storage.put_bytes(KEY, b"newer")
    assert storage.read_bytes(KEY) == b"newer"
    assert storage.put("empty.bin", io.BytesIO(b"")) == 0
    assert storage.read_bytes("empty.bin") == b""


def test_delete(storage: Storage) -> None:
    storage.put_bytes(KEY, b"data")
    storage.delete(KEY)
    assert storage.size(KEY) is None
    assert storage.keys() == []
    storage.delete(KEY)  # already gone: fine


def test_missing_key_is_not_found(storage: Storage) -> None:
    with pytest.raises(NotFound) as caught, storage.open(KEY):
        pass
    assert storage.location(KEY) in caught.value.message
    with pytest.raises(NotFound):
        storage.read_bytes(KEY)
    assert storage.size(KEY) is None


def test_failing_stream_leaves_nothing_behind(storage: Storage, tmp_path: Path) -> None:
    storage.put_bytes("old.sql.zst", b"previous backup")
    # Past the first S3 part, so a multipart upload is under way when the stream fails.
    for key in (KEY, "old.sql.zst"):
        with pytest.raises(DumpFailed):
            storage.put(key, reader(chunks(BIG, fail_after=S3_PART_SIZE + 4 * MIB)))
    assert storage.size(KEY) is None
    assert storage.keys() == ["old.sql.zst"]
    assert storage.read_bytes("old.sql.zst") == b"previous backup"
    if isinstance(storage, LocalStorage):
        files = [p.relative_to(storage.root) for p in storage.root.rglob("*") if p.is_file()]
        assert files == [Path("old.sql.zst")]
    else:
        assert isinstance(storage, S3Storage)
        uploads = storage.client.list_multipart_uploads(Bucket=storage.bucket)
        assert uploads.get("Uploads", []) == []


def test_location_and_describe(storage: Storage) -> None:
    if isinstance(storage, LocalStorage):
        assert storage.kind == "local"
        assert storage.location(KEY) == str(storage.root / KEY)
        assert storage.describe() == str(storage.root)
    else:
        assert isinstance(storage, S3Storage)
        assert storage.kind == "s3"
        assert storage.location(KEY) == f"s3://{storage.bucket}/backups/{KEY}"
        assert storage.describe().startswith(f"s3://{storage.bucket}/backups (endpoint http://")


@pytest.mark.parametrize(
    "key", ["/etc/passwd", "../escape", "a/../../escape", "a/./b", "a//b", "", "a/", ".hidden"]
)
def test_unsafe_keys_are_rejected(tmp_path: Path, key: str) -> None:
    storage = LocalStorage(tmp_path / "backups")
    with pytest.raises(InvalidInput, match="invalid backup key"):
        storage.put_bytes(key, b"x")
    with pytest.raises(InvalidInput):
        storage.read_bytes(key)
    with pytest.raises(InvalidInput):
        S3Storage("bucket").location(key)
    assert sorted(tmp_path.rglob("*")) == []


def test_local_files_are_private(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "data" / "backups")
    storage.put_bytes(KEY, b"secret rows")
    assert stat.S_IMODE((storage.root / KEY).stat().st_mode) == 0o600
    directory = (storage.root / KEY).parent
    while directory != tmp_path:
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
        directory = directory.parent


def test_s3_keys_under_the_prefix(s3_storage: S3Storage, s3_server: str) -> None:
    s3_storage.put_bytes(KEY, b"x")
    listed = s3_storage.client.list_objects_v2(Bucket=s3_storage.bucket)
    assert [item["Key"] for item in listed["Contents"]] == [f"backups/{KEY}"]
    unprefixed = S3Storage(s3_storage.bucket, prefix="/", endpoint_url=s3_server)
    assert unprefixed.location(KEY) == f"s3://{s3_storage.bucket}/{KEY}"
    assert unprefixed.keys() == [f"backups/{KEY}"]
    other = S3Storage(s3_storage.bucket, prefix="backups-other", endpoint_url=s3_server)
    assert other.keys() == []


def test_s3_missing_bucket_is_named_without_secrets(s3_storage: S3Storage, s3_server: str) -> None:
    missing = S3Storage("tenantry-no-such-bucket", endpoint_url=s3_server)
    attempts: list[Callable[[], object]] = [
        lambda: missing.put_bytes(KEY, b"x"),
        lambda: missing.put(KEY, reader(chunks(MIB))),
        lambda: missing.read_bytes(KEY),
        lambda: missing.keys(),
    ]
    for attempt in attempts:
        with pytest.raises(ConfigurationError) as caught:
            attempt()
        assert "'tenantry-no-such-bucket' does not exist" in caught.value.message
        assert "create the bucket" in str(caught.value).lower()
        assert SECRET_KEY not in str(caught.value)


def test_s3_without_credentials(
    s3_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    use_fake_credentials(monkeypatch)
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    storage = S3Storage("tenantry-backups", endpoint_url=s3_server)
    with pytest.raises(ConfigurationError) as caught:
        storage.put_bytes(KEY, b"x")
    assert "'tenantry-backups'" in caught.value.message
    assert "AWS_ACCESS_KEY_ID" in (caught.value.hint or "")


def test_s3_unreachable_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    use_fake_credentials(monkeypatch)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with socket.socket() as sock:  # a port nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    storage = S3Storage("tenantry-backups", endpoint_url=f"http://127.0.0.1:{port}")
    with pytest.raises(StorageError) as caught:
        storage.keys()
    assert f"http://127.0.0.1:{port}" in caught.value.message
    assert "TENANTRY_BACKUP_S3_ENDPOINT" in (caught.value.hint or "")
    assert SECRET_KEY not in str(caught.value)


def test_storage_for_follows_the_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("BUCKET", "PREFIX", "ENDPOINT", "REGION"):
        monkeypatch.delenv(f"TENANTRY_BACKUP_S3_{var}", raising=False)
    monkeypatch.delenv("TENANTRY_BACKUP_DIR", raising=False)
    local = storage_for(load_settings(TENANTRY_DATA_DIR=str(tmp_path)))
    assert isinstance(local, LocalStorage)
    assert local.root == tmp_path / "backups"

    s3 = storage_for(
        load_settings(
            TENANTRY_BACKUP_S3_BUCKET="b",
            TENANTRY_BACKUP_S3_ENDPOINT="http://minio:pa55word@minio.internal:9000",
            backup_s3_region="eu-west-3",
        )
    )
    assert isinstance(s3, S3Storage)
    assert (s3.bucket, s3.prefix, s3.region) == ("b", "tenantry", "eu-west-3")
    assert s3.describe() == (
        "s3://b/tenantry (endpoint http://minio.internal:9000, region eu-west-3)"
    )
    assert s3.location(KEY) == f"s3://b/tenantry/{KEY}"
