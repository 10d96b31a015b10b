"""A failed connect_existing job's error, read with the store's own key, reveals nothing
about the credentials: masked by URL structure, never by replacing the password's text."""

from __future__ import annotations

import logging
import re
import uuid

import pytest

from tests.api.conftest import Api
from tests.conftest import SERVER_URLS, require_server

#: ``user:***@`` in a URL is the one mask allowed; any other ``***`` is a replaced substring.
_URL_MASK = re.compile(r"://[^\s:/@]*:\*\*\*@")


def assert_masked_by_structure(text: str) -> None:
    """Only URL passwords are masked: nothing was cut out of the surrounding words."""
    assert "***" not in _URL_MASK.sub("://", text), text


def _failed_job_as_store(api: Api, url: str) -> dict[str, object]:
    slug = f"sec-{uuid.uuid4().hex[:8]}"
    result = api.provisioned_store(slug, mode="connect_existing", url=url)
    job = api.client.get(f"/provision/{result['job']['id']}", headers=api.store_key(slug))
    assert job.status_code == 200, job.text
    doc = dict(job.json())
    assert doc["status"] == "failed", doc
    return doc


@pytest.mark.parametrize("password", ["p", "postgres", "127", "5432", "Zq7xK9wJ"])
def test_postgresql_job_errors_do_not_spell_out_the_password(
    api: Api, caplog: pytest.LogCaptureFixture, password: str
) -> None:
    require_server("postgresql")
    caplog.set_level(logging.DEBUG)
    missing = f"tt_missing_{uuid.uuid4().hex[:8]}"
    # Trust authentication accepts any password, so the database is what fails here.
    url = f"postgresql://postgres:{password}@127.0.0.1:5432/{missing}"
    job = _failed_job_as_store(api, url)
    error = str(job["error"])
    assert f"cannot connect to postgresql+psycopg://postgres:***@127.0.0.1:5432/{missing}" in error
    assert f'database "{missing}" does not exist' in error
    assert_masked_by_structure(error)
    assert_masked_by_structure(caplog.text)
    assert "Zq7xK9wJ" not in error + caplog.text

    refused = _failed_job_as_store(api, f"postgresql://app:{password}@127.0.0.1:1/shop")
    assert "cannot connect to postgresql+psycopg://app:***@127.0.0.1:1/shop" in str(
        refused["error"]
    )
    assert_masked_by_structure(str(refused["error"]))


@pytest.mark.parametrize("password", ["p", "root", "localhost", "Zq7xK9wJ"])
def test_mariadb_job_errors_do_not_spell_out_the_password(
    api: Api, caplog: pytest.LogCaptureFixture, password: str
) -> None:
    require_server("mysql")
    caplog.set_level(logging.DEBUG)
    server = SERVER_URLS["mysql"].rsplit("/", 1)[0].replace("mysql://root@", "")
    job = _failed_job_as_store(api, f"mysql://root:{password}@{server}/mysql")
    error = str(job["error"])
    assert f"cannot connect to mysql+pymysql://root:***@{server}/mysql" in error
    assert "Access denied for user 'root'@" in error
    assert "(using password: YES)" in error
    assert_masked_by_structure(error)
    assert_masked_by_structure(caplog.text)
    assert "Zq7xK9wJ" not in error + caplog.text
