"""A new SQLite tenant file made whole in memory and put in place with one atomic rename.

Copying the template and then stamping and seeding the copy on disk costs a WAL file, its
checkpoint and four fsyncs on close, and a fresh engine (whose compiled-statement cache starts
empty) per store. Here the template's bytes are loaded into an in-memory database, the
caller's work (identity and initial data) runs there in one transaction, and the result is
written to a temporary file beside the target, flushed to disk (the file and then its
directory), and renamed into place: the tenant file is absent or complete, stamped and seeded,
never half-written. One engine serves every such copy, so its statements compile once.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.pool import NullPool

from tenantry.files import private_dir

T = TypeVar("T")

#: Bytes 18 and 19 of a SQLite file: its write and read format versions, 2 in WAL mode (an
#: in-memory database cannot open a WAL-mode image, so it gets 1, the rollback journal's).
_FORMAT_OFFSET = slice(18, 20)
_ROLLBACK, _WAL = b"\x01\x01", b"\x02\x02"

_image = threading.local()
_engine_lock = threading.Lock()
_engine: Engine | None = None


def _open_image() -> sqlite3.Connection:
    """A new in-memory connection holding the image the current thread set."""
    raw = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    try:
        raw.deserialize(_image.data)
        raw.execute("PRAGMA foreign_keys=ON")
    except BaseException:
        raw.close()
        raise
    return raw


def _memory_engine() -> Engine:
    global _engine
    with _engine_lock:
        if _engine is None:
            _engine = create_engine("sqlite://", creator=_open_image, poolclass=NullPool)
        return _engine


def write_prepared_copy(template: Path, path: Path, prepare: Callable[[Connection], T]) -> T:
    """Create the SQLite file ``path`` as ``template`` with ``prepare``'s changes (run in one
    transaction on an in-memory copy); what ``prepare`` returned.

    ``path`` appears whole (durably written, then renamed) or not at all; when ``prepare``
    raises, nothing is written. Any existing ``path`` is replaced: the caller knows it is its.
    """
    image = bytearray(template.read_bytes())
    header = bytes(image[_FORMAT_OFFSET])
    if header == _WAL:
        image[_FORMAT_OFFSET] = _ROLLBACK
    _image.data = bytes(image)
    try:
        with _memory_engine().connect() as conn:
            conn.exec_driver_sql("BEGIN")
            result = prepare(conn)
            conn.exec_driver_sql("COMMIT")
            conn.commit()  # SQLAlchemy's own bookkeeping: nothing is open in SQLite
            raw = conn.connection.dbapi_connection
            assert isinstance(raw, sqlite3.Connection)
            out = bytearray(raw.serialize())
    finally:
        _image.data = b""
    out[_FORMAT_OFFSET] = header  # as a plain copy of the template (WAL mode, as built)
    _write_atomically(path, bytes(out))
    return result


def _write_atomically(path: Path, data: bytes) -> None:
    directory = private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(suffix=".db", dir=directory)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fdatasync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename, too, survives a power loss
    finally:
        os.close(dir_fd)
