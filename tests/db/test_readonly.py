"""Making a PostgreSQL database read-only ends its other sessions without cutting off a read
being served at that moment: an idle session is ended at once, a busy one once it is done."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tenantry.db import readonly
from tenantry.db.engines import make_engine
from tests.conftest import DbFactory


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_read_in_flight_is_answered_and_idle_sessions_are_ended(
    backend: str, new_database: DbFactory
) -> None:
    url = new_database("readonly_grace")
    engine = make_engine(url, pooled=False)
    try:
        with engine.connect() as setup:
            setup.execute(text("CREATE TABLE t (id int)"))
            setup.execute(text("INSERT INTO t VALUES (1)"))
            setup.commit()
        with engine.connect() as idle, engine.connect() as reading:
            idle.execute(text("SELECT 1"))
            idle.commit()
            reading.execute(text("SELECT count(*) FROM t"))  # a read, its transaction open
            outcome: list[readonly.ReadOnlyOutcome] = []
            switch = threading.Thread(
                target=lambda: outcome.append(readonly.make_read_only(url)), daemon=True
            )
            switch.start()
            time.sleep(0.3)  # the switch is waiting for the read's transaction
            assert switch.is_alive()
            assert reading.execute(text("SELECT count(*) FROM t")).scalar_one() == 1
            reading.commit()  # the read is answered in full
            switch.join(timeout=readonly.PG_INFLIGHT_GRACE_S + 5)
            assert not switch.is_alive()
            assert outcome[0].applied
            with pytest.raises(DBAPIError):  # the idle session was ended
                idle.execute(text("SELECT 1"))
        with engine.connect() as later, pytest.raises(DBAPIError, match="read-only"):
            later.execute(text("INSERT INTO t VALUES (2)"))
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_session_still_busy_after_the_grace_is_ended(
    backend: str, new_database: DbFactory
) -> None:
    url = new_database("readonly_busy")
    engine = make_engine(url, pooled=False)
    try:
        with engine.connect() as busy:
            busy.execute(text("SELECT 1"))  # a transaction left open past the grace
            started = time.monotonic()
            readonly.make_read_only(url)
            assert time.monotonic() - started >= readonly.PG_INFLIGHT_GRACE_S
            with pytest.raises(DBAPIError):
                busy.execute(text("SELECT 1"))
    finally:
        engine.dispose()
