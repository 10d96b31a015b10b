"""Backups kept in an S3 bucket (or any S3-compatible store): the :class:`S3Storage` backend.

Objects are written with multipart uploads, so an object appears under its key only once it is
complete; an upload cut off half-way leaves parts that :meth:`S3Storage.delete_unfinished`
aborts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import cached_property
from typing import TYPE_CHECKING, BinaryIO, cast
from urllib.parse import urlsplit, urlunsplit

from tenantry.backup.storage import MIB, StorageError, check_key, is_valid_key
from tenantry.errors import ConfigurationError, NotFound, TenantryError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

#: S3 multipart part size. S3 allows 10,000 parts, so one object can hold about 156 GiB.
S3_PART_SIZE = 16 * MIB
#: Parts buffered or in flight at once: a non-seekable stream is held in memory part by part.
S3_PARTS_IN_MEMORY = 4
_AUTH_CODES = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"}
)
_S3_HINT = (
    "Check TENANTRY_BACKUP_S3_BUCKET, TENANTRY_BACKUP_S3_REGION and TENANTRY_BACKUP_S3_ENDPOINT."
)


class S3Storage:
    """Backups as objects in an S3 (or S3-compatible) bucket, named ``<prefix>/<key>``.

    Credentials come from boto3's usual sources (AWS_* variables, profiles, instance roles).
    """

    kind = "s3"

    def __init__(
        self,
        bucket: str,
        prefix: str = "tenantry",
        endpoint_url: str | None = None,
        region: str | None = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        self.region = region

    @cached_property
    def client(self) -> S3Client:
        """The boto3 client, made on first use so that local-only setups never import boto3."""
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise _boto3_missing() from None
        # S3-compatible servers rarely resolve bucket subdomains; path style works on all of them.
        config = Config(s3={"addressing_style": "path"}) if self.endpoint_url else None
        # A session of its own: boto3's default session is not safe to share between threads.
        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint_url, region_name=self.region, config=config
        )

    def describe(self) -> str:
        """``s3://bucket/prefix``, with the endpoint and region when set."""
        extras = [f"endpoint {_public_url(self.endpoint_url)}"] if self.endpoint_url else []
        if self.region:
            extras.append(f"region {self.region}")
        where = f"s3://{self.bucket}/{self.prefix}"
        return f"{where} ({', '.join(extras)})" if extras else where

    def location(self, key: str) -> str:
        """The ``s3://`` URL of ``key``."""
        return f"s3://{self.bucket}/{self._name(key)}"

    def _name(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, stream: BinaryIO) -> int:
        """Upload ``stream`` in parts; S3 shows the object only once the upload completes.

        On failure boto3 aborts the multipart upload, so no parts are left behind either.
        """
        name = self._name(key)
        counted = _Counted(stream)
        with self._errors(key):
            client = self.client  # first, for its clear error if boto3 is missing
            from boto3.s3.transfer import TransferConfig

            config = TransferConfig(
                multipart_threshold=S3_PART_SIZE,
                multipart_chunksize=S3_PART_SIZE,
                max_concurrency=S3_PARTS_IN_MEMORY,
                # These limits are the classic transfer manager's; boto3 might pick the CRT one.
                preferred_transfer_client="classic",
            )
            config.max_in_memory_upload_chunks = S3_PARTS_IN_MEMORY
            # _Counted is not seekable, so boto3 reads it once, part by part.
            client.upload_fileobj(cast(BinaryIO, counted), self.bucket, name, Config=config)
        return counted.count

    def put_bytes(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` in one request."""
        name = self._name(key)
        with self._errors(key):
            self.client.put_object(Bucket=self.bucket, Key=name, Body=data)

    @contextlib.contextmanager
    def open(self, key: str) -> Iterator[BinaryIO]:
        """Stream ``key``'s object; :class:`NotFound` if it does not exist."""
        name = self._name(key)
        with self._errors(key):
            body = self.client.get_object(Bucket=self.bucket, Key=name)["Body"]
            with contextlib.closing(body):
                yield cast(BinaryIO, body)

    def read_bytes(self, key: str) -> bytes:
        """``key``'s whole content; :class:`NotFound` if it does not exist."""
        with self.open(key) as body:
            return body.read()

    def size(self, key: str) -> int | None:
        """``key``'s size in bytes, or None if it does not exist."""
        name = self._name(key)
        try:
            with self._errors(key):
                head = self.client.head_object(Bucket=self.bucket, Key=name)
        except NotFound:
            return None
        return head["ContentLength"]

    def delete(self, key: str) -> None:
        """Remove ``key``'s object; S3 treats a missing one as deleted."""
        name = self._name(key)
        with self._errors(key):
            self.client.delete_object(Bucket=self.bucket, Key=name)

    def delete_unfinished(self, key: str) -> None:
        """Abort the multipart uploads of ``key`` still open (their parts are stored, and
        billed, until aborted; the object itself only appears once an upload completes)."""
        name = self._name(key)
        with self._errors(key):
            listed = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=name)
            for upload in listed.get("Uploads", []):
                if upload.get("Key") == name:
                    self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=name, UploadId=upload["UploadId"]
                    )

    def keys(self, prefix: str = "") -> list[str]:
        """The keys starting with ``prefix``, sorted."""
        base = f"{self.prefix}/" if self.prefix else ""
        found: list[str] = []
        with self._errors():
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=base + prefix
            )
            for page in pages:
                found.extend(item["Key"][len(base) :] for item in page.get("Contents", []))
        return sorted(key for key in found if is_valid_key(key))

    @contextlib.contextmanager
    def _errors(self, key: str | None = None) -> Iterator[None]:
        """Turn botocore's exceptions into tenantry's; the caller's own exceptions pass through."""
        try:
            from botocore.exceptions import BotoCoreError, ClientError
        except ImportError:
            raise _boto3_missing() from None
        try:
            yield
        except (BotoCoreError, ClientError) as exc:
            raise self._translate(exc, key) from exc

    def _translate(self, exc: Exception, key: str | None) -> TenantryError:
        from botocore.exceptions import ClientError, NoCredentialsError, PartialCredentialsError
        from botocore.exceptions import ConnectionError as S3ConnectionError

        bucket = self.bucket
        where = self.location(key) if key is not None else f"s3://{bucket}/{self.prefix}"
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            return ConfigurationError(
                f"no usable S3 credentials for bucket {bucket!r}.",
                "Set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile (AWS_PROFILE), "
                "or run with an instance role.",
            )
        if isinstance(exc, S3ConnectionError):
            endpoint = _public_url(self.endpoint_url) if self.endpoint_url else "AWS"
            return StorageError(
                f"cannot reach S3 at {endpoint} for bucket {bucket!r}.",
                "Check TENANTRY_BACKUP_S3_ENDPOINT, TENANTRY_BACKUP_S3_REGION and the network.",
            )
        if not isinstance(exc, ClientError):
            return StorageError(f"S3 request for {where} failed: {exc}", _S3_HINT)
        error = exc.response.get("Error", {})
        code = error.get("Code", "unknown")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code == "NoSuchBucket":
            return ConfigurationError(
                f"S3 bucket {bucket!r} does not exist.",
                "Create the bucket or fix TENANTRY_BACKUP_S3_BUCKET.",
            )
        if code in {"NoSuchKey", "NotFound", "404"}:
            # A HEAD request has no body, so a missing bucket also looks like this.
            return NotFound(f"no backup object at {where}.")
        if code in _AUTH_CODES or status == 403:
            return ConfigurationError(
                f"S3 refused access to bucket {bucket!r} ({code}).",
                "Check the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the profile) "
                "and the bucket's policy.",
            )
        message = error.get("Message", "no details")
        return StorageError(f"S3 request for {where} failed ({code}): {message}", _S3_HINT)


class _Counted:
    """A reader counting the bytes read through it, since boto3 does not report them."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.count += len(data)
        return data


def _boto3_missing() -> ConfigurationError:
    return ConfigurationError(
        "TENANTRY_BACKUP_S3_BUCKET is set but boto3 is not installed.",
        "Install it with: pip install 'tenantry[s3]'.",
    )


def _public_url(url: str) -> str:
    """``url`` without a ``user:password@`` part."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
