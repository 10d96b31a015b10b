"""What a write killed mid-way leaves in storage (a temp file, an open multipart upload) is
removed by ``delete_unfinished``; the object itself, and other keys' writes, are left alone."""

from __future__ import annotations

import pytest

from tenantry.backup.s3_storage import S3Storage
from tenantry.backup.storage import LocalStorage, Storage
from tests.backup.conftest import s3_server, s3_storage, storage

__all__ = ["s3_server", "s3_storage", "storage"]

KEY = "billing/2026/12/03/20261203T120000Z-0123456789ab.sqlite.zst"
OTHER = "billing/2026/12/03/20261203T130000Z-ba9876543210.sqlite.zst"


def _leave_unfinished(storage: Storage, key: str) -> None:
    """What a process killed mid-put leaves behind."""
    if isinstance(storage, LocalStorage):
        path = storage.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / f".{path.name}.k1ll3d.tmp").write_bytes(b"partial")
        return
    assert isinstance(storage, S3Storage)
    name = storage._name(key)
    upload = storage.client.create_multipart_upload(Bucket=storage.bucket, Key=name)
    storage.client.upload_part(
        Bucket=storage.bucket,
        Key=name,
        PartNumber=1,
        UploadId=upload["UploadId"],
        Body=b"x" * (5 * 1024 * 1024),
    )


def _unfinished(storage: Storage) -> list[str]:
    if isinstance(storage, LocalStorage):
        return sorted(p.name for p in storage.root.rglob("*.tmp"))
    assert isinstance(storage, S3Storage)
    listed = storage.client.list_multipart_uploads(Bucket=storage.bucket)
    return sorted(u["Key"].rsplit("/", 1)[-1] for u in listed.get("Uploads", []))


@pytest.mark.parametrize("existing", [False, True])
def test_delete_unfinished_removes_only_that_keys_interrupted_writes(
    storage: Storage, existing: bool
) -> None:
    if existing:
        storage.put_bytes(KEY, b"a finished backup")
    _leave_unfinished(storage, KEY)
    _leave_unfinished(storage, OTHER)
    assert len(_unfinished(storage)) == 2
    storage.delete_unfinished(KEY)
    remaining = _unfinished(storage)
    assert len(remaining) == 1
    assert OTHER.rsplit("/", 1)[-1] in remaining[0]
    assert storage.size(KEY) == (len(b"a finished backup") if existing else None)
    storage.delete_unfinished("master/never-written.sqlite.zst")  # nothing there: no error
