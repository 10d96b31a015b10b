"""Backup storage fixtures: one moto S3 server per session, and each storage backend in turn."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tenantry.backup.s3_storage import S3Storage
from tenantry.backup.storage import LocalStorage, Storage

ACCESS_KEY = "AKIATENANTRYTEST0001"
#: Tests assert that error messages never contain it.
SECRET_KEY = "tenantry-test-secret-c2VjcmV0LXZhbHVl"
AWS_VARIABLES = (
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """The endpoint URL of a moto S3 server on a free local port."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def use_fake_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make boto3 use only the test's credentials, whatever the machine has configured."""
    for var in AWS_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture
def s3_storage(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> S3Storage:
    """Storage in a fresh bucket on the moto server, under the prefix ``backups``."""
    use_fake_credentials(monkeypatch)
    bucket = f"tenantry-test-{uuid.uuid4().hex[:12]}"
    boto3.session.Session().client("s3", endpoint_url=s3_server).create_bucket(Bucket=bucket)
    return S3Storage(bucket, prefix="backups", endpoint_url=s3_server)


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    """Each backend in turn: a local directory, then an S3 bucket."""
    if request.param == "s3":
        return cast(S3Storage, request.getfixturevalue("s3_storage"))
    return LocalStorage(tmp_path / "backups")
