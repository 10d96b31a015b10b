"""SQLite: the online backup API both ways, so a live target changes in one step."""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from sqlalchemy.engine import URL

from tenantry.backup.dump_tools.base import (
    BackupEngine,
    BackupToolError,
    DumpInfo,
    IntegrityReport,
    feed,
)
from tenantry.db.engines import sqlite_busy_timeout_ms, sqlite_path
from tenantry.db.urls import mask
from tenantry.errors import ConfigurationError
from tenantry.files import private_dir, private_file


def sqlite_file(url: URL) -> Path:
    path = sqlite_path(url)
    if path is None:
        raise ConfigurationError(f"{mask(url)} is not a SQLite file.", "Give a sqlite:/// URL.")
    return path


class SQLiteEngine(BackupEngine):
    """The online backup API, both ways."""

    backend = "sqlite"
    extension = "sqlite"

    @contextmanager
    def dump(self, url: URL) -> Iterator[tuple[IO[bytes], DumpInfo]]:
        source_path = sqlite_file(url)
        if not source_path.is_file():
            raise ConfigurationError(f"the SQLite database {source_path} does not exist.")
        with tempfile.TemporaryDirectory(dir=source_path.parent, prefix=".backup-") as tmp:
            copy = Path(tmp) / "copy.db"
            source = sqlite3.connect(source_path)
            target = sqlite3.connect(copy)
            try:
                # One consistent copy even while others write (the API restarts on change).
                source.backup(target)
                counts = _sqlite_counts(target)
                # A self-contained file: no WAL to carry along.
                target.execute("PRAGMA journal_mode=DELETE")
            except sqlite3.Error as exc:
                raise BackupToolError(
                    f"the SQLite backup of {source_path} failed: {exc}.",
                    "Check the file's permissions and free disk space, then run again.",
                ) from None
            finally:
                source.close()
                target.close()
            info = DumpInfo(
                counts, True, sqlite3.sqlite_version, "sqlite3", "SQLite online backup API"
            )
            with copy.open("rb") as stream:
                yield stream, info

    def restore(self, url: URL, stream: IO[bytes]) -> None:
        target_path = sqlite_file(url)
        private_dir(target_path.parent)
        with tempfile.TemporaryDirectory(dir=target_path.parent, prefix=".restore-") as tmp:
            staged = Path(tmp) / "restored.db"
            with staged.open("wb") as sink:
                feed(stream, sink)
            replace_sqlite(staged, target_path)

    def integrity_check(self, url: URL) -> IntegrityReport:
        conn = sqlite3.connect(sqlite_file(url))
        try:
            return IntegrityReport(_sqlite_integrity(conn))
        except sqlite3.DatabaseError as exc:
            return IntegrityReport([str(exc)])
        finally:
            conn.close()


def replace_sqlite(source_path: Path, target_path: Path) -> None:
    """Replace the SQLite database at ``target_path`` with a checked copy of ``source_path``.

    The backup API replaces the target's pages in one locked step, so other connections see
    the old database or the new one, never a mix (a file rename would strand them).
    """
    source = sqlite3.connect(source_path)
    try:
        problems = _sqlite_integrity(source)
        if problems:
            raise BackupToolError(
                f"the backup is not a sound SQLite database: {'; '.join(problems)}.",
                "Restore another backup; this one is damaged.",
            )
        private_file(target_path)  # sqlite3 would create a missing target with the umask's mode
        # A live target may be busy with another process's write: wait for it as the
        # engines do (the busy timeout) rather than the driver's 5 s.
        target = sqlite3.connect(target_path, timeout=sqlite_busy_timeout_ms() / 1000)
        try:
            source.backup(target)
        finally:
            target.close()
    except sqlite3.DatabaseError as exc:
        raise BackupToolError(
            f"cannot restore into {target_path}: {exc}.",
            "Restore another backup, or check the target file's permissions.",
        ) from None
    finally:
        source.close()


def _sqlite_counts(conn: sqlite3.Connection) -> dict[str, int]:
    names = [
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' "
            "ORDER BY name"
        )
    ]
    return {n: int(conn.execute(f'SELECT COUNT(*) FROM "{n}"').fetchone()[0]) for n in names}


def _sqlite_integrity(conn: sqlite3.Connection) -> list[str]:
    rows = [str(r[0]) for r in conn.execute("PRAGMA integrity_check").fetchall()]
    return [] if rows == ["ok"] else rows
