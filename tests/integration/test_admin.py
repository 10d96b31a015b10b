"""Creating and dropping databases on each backend."""

from __future__ import annotations

import pytest

from tenantry.db.admin import create_database, database_exists, drop_database
from tenantry.errors import ConfigurationError
from tests.conftest import DbFactory


def test_create_is_idempotent_and_drop_removes(new_database: DbFactory) -> None:
    url = new_database("admin", create=False)
    assert not database_exists(url)
    assert create_database(url) is True
    assert database_exists(url)
    assert create_database(url) is False
    assert drop_database(url) is True
    assert not database_exists(url)
    assert drop_database(url) is False


def test_unsafe_database_names_never_reach_sql(new_database: DbFactory) -> None:
    url = new_database("admin", create=False)
    if url.get_backend_name() == "sqlite":
        pytest.skip("SQLite databases are files, not identifiers")
    with pytest.raises(ConfigurationError) as err:
        create_database(url.set(database='x"; DROP DATABASE postgres; --'))
    assert "not allowed" in err.value.message
