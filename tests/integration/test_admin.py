"""Creating and dropping databases on each backend."""

from __future__ import annotations

import pytest

from tenantry.db.admin import create_database, database_exists, drop_database
from tenantry.db.urls import parse_url
from tenantry.errors import ConfigurationError
from tests.conftest import SERVER_URLS, DbFactory, require_server


def test_create_is_idempotent_and_drop_removes(new_database: DbFactory) -> None:
    url = new_database("admin", create=False)
    assert not database_exists(url)
    assert create_database(url) is True
    assert database_exists(url)
    assert create_database(url) is False
    assert drop_database(url) is True
    assert not database_exists(url)
    assert drop_database(url) is False


@pytest.mark.parametrize("server", ["postgresql", "mysql"])
def test_unsafe_database_names_never_reach_sql(server: str) -> None:
    require_server(server)
    url = parse_url(SERVER_URLS[server]).set(database='x"; DROP DATABASE postgres; --')
    with pytest.raises(ConfigurationError) as err:
        create_database(url)
    assert "not allowed" in err.value.message
