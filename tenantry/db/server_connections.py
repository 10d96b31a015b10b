"""One engine per database server for work that visits many databases on it: fleet runs,
imports, backups, and provisioning's one-off connections to a new database.

A fresh engine per database repeats the driver's set-up queries and starts with an empty
compiled-statement cache; over a thousand tenant databases that costs more than the work.
Here each server (driver, host, port, user) gets one unpooled engine whose connections are
opened to whichever database the calling thread asks for (on MySQL/MariaDB, whose dialect
remembers the first database as its default schema, the engine is per database). Nothing is
pooled, so nothing can be handed to the wrong database later, and callers still check each
database's identity.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.engine import URL
from sqlalchemy.exc import InterfaceError, OperationalError

from tenantry.db.engines import describe_connect_error, make_engine, server_connect_args
from tenantry.db.tls import unreadable_tls_file
from tenantry.db.urls import backend_of

#: Engines kept at once; the least recently used goes first (it holds no connection).
MAX_ENGINES = 256


class ServerConnections:
    """Connections to many databases, one shared engine per server."""

    def __init__(self) -> None:
        self._engines: OrderedDict[tuple[Any, ...], Engine] = OrderedDict()
        self._lock = threading.Lock()
        self._target = threading.local()

    def _engine_for(self, url: URL) -> Engine:
        # The query is part of the key: the same login with and without TLS options must
        # not share an engine.
        key: tuple[Any, ...] = (
            url.drivername,
            url.host,
            url.port,
            url.username,
            url.password,
            tuple(sorted(url.query.items())),
        )
        if backend_of(url) == "mysql":
            # MySQL's "schema" is the database: the dialect learns its default schema from
            # the first connection and reflection would look there. One engine per database.
            key = (*key, url.database)
        with self._lock:
            engine = self._engines.get(key)
            if engine is None:
                engine = make_engine(url, pooled=False, creator=self._open)
                self._engines[key] = engine
                if len(self._engines) > MAX_ENGINES:  # per-database engines (MySQL) add up
                    self._engines.popitem(last=False)[1].dispose()
            else:
                self._engines.move_to_end(key)
            return engine

    def _open(self) -> Any:
        dialect, cargs, cparams = self._target.args
        return dialect.connect(*cargs, **cparams)

    @contextmanager
    def connect(self, url: URL) -> Iterator[Connection]:
        """A connection to the database of ``url``, closed (not pooled) on exit."""
        engine = self._engine_for(url)
        cargs, cparams = engine.dialect.create_connect_args(url)
        backend = backend_of(url)
        if backend != "sqlite":
            cparams = {**cparams, **server_connect_args(url)}
        self._target.args = (engine.dialect, cargs, cparams)
        try:
            conn = engine.connect()
        except (OperationalError, InterfaceError) as exc:
            raise describe_connect_error(url, exc) from None
        except FileNotFoundError as exc:
            raise unreadable_tls_file(url, exc) from None
        finally:
            self._target.args = None
        with conn:
            yield conn

    def dispose(self) -> None:
        """Dispose every engine."""
        with self._lock:
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()


#: Shared by everything in this process that opens one-off connections to tenant databases
#: (fleet runs, verify, imports, backups, provisioning): one engine per server, its dialect
#: set up once and its compiled statements reused, not one engine per database.
SERVERS = ServerConnections()
