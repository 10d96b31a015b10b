"""What every dump tool shares: running a client tool, its errors, the engine interface.

Credentials reach the tools through the environment (``PGPASSWORD``) or a 0600 option file,
never the command line, and never appear in an error: a tool's stderr is scrubbed of the
password before it is shown.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from sqlalchemy import Connection, inspect, text
from sqlalchemy.engine import URL

from tenantry.db.engines import connect, make_engine
from tenantry.db.urls import mask, redact
from tenantry.errors import ConfigurationError, TenantryError

CHUNK = 1 << 20


class BackupToolError(TenantryError):
    """A dump or restore tool failed (its exit status and scrubbed stderr say why)."""


@dataclass(frozen=True)
class DumpInfo:
    """What a dump knows about the database it was taken from."""

    row_counts: dict[str, int]
    #: True when the counts come from the dump's own snapshot (PostgreSQL, SQLite); MySQL's
    #: are read in a separate consistent snapshot just before the dump.
    exact_counts: bool
    server_version: str
    tool: str
    tool_version: str


def count_rows(conn: Connection) -> dict[str, int]:
    """Rows per table of the database behind ``conn`` (every table, tenantry's included)."""
    preparer = conn.dialect.identifier_preparer
    counts: dict[str, int] = {}
    for table in sorted(inspect(conn).get_table_names()):
        quoted = preparer.quote(table)
        counts[table] = int(conn.execute(text(f"SELECT COUNT(*) FROM {quoted}")).scalar_one())
    return counts


def scrub(message: str, url: URL) -> str:
    # By structure (see redact): never by searching for the password, which would spell out
    # a short one. The tools get the password from the environment, not their arguments.
    return redact(message).strip()


def find_tool(*candidates: str) -> str:
    for name in candidates:
        found = shutil.which(name)
        if found:
            return found
    raise ConfigurationError(
        f"none of {', '.join(candidates)} is installed.",
        "Install the database's client tools (Debian: postgresql-client or mariadb-client) "
        "on the machine that runs backups.",
    )


@functools.cache
def tool_version(tool: str) -> str:
    out = subprocess.run([tool, "--version"], capture_output=True, text=True, check=False)
    return (out.stdout or out.stderr).strip().splitlines()[0] if out.returncode == 0 else "?"


class ToolProcess:
    """A tool run with its stderr in a temp file (a pipe could fill up and deadlock it)."""

    def __init__(self, args: list[str], env: dict[str, str], url: URL, *, stdin: bool) -> None:
        self.url = url
        self.name = Path(args[0]).name
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in finish()/kill()
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.DEVNULL if stdin else subprocess.PIPE,
            stderr=self._stderr,
            env={**os.environ, **env},
        )

    def finish(self, action: str) -> None:
        """Wait for the tool; a non-zero exit raises with its scrubbed stderr."""
        code = self.proc.wait()
        self._stderr.seek(0)
        err = self._stderr.read().decode("utf-8", "replace")
        self._stderr.close()
        if code != 0:
            detail = scrub(err, self.url)[-2000:] or "(no message)"
            raise BackupToolError(
                f"{self.name} failed to {action} {mask(self.url)} (exit status {code}): {detail}",
                "Fix the cause above and run the command again; nothing was recorded as good.",
            )

    def kill(self) -> None:
        """Stop the tool (after a failure on our side of the pipe)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._stderr.close()


@contextmanager
def dump_output(process: ToolProcess) -> Iterator[IO[bytes]]:
    """The dump tool's output; leaving the block waits for it and checks its exit status,
    an error inside the block kills it."""
    assert process.proc.stdout is not None
    try:
        yield process.proc.stdout
    except BaseException:
        process.kill()
        raise
    process.finish("dump")


def feed(stream: IO[bytes], sink: IO[bytes]) -> int:
    """Copy ``stream`` into ``sink`` in chunks; the number of bytes copied."""
    total = 0
    while chunk := stream.read(CHUNK):
        sink.write(chunk)
        total += len(chunk)
    return total


def pipe_into(process: ToolProcess, stream: IO[bytes], action: str) -> None:
    assert process.proc.stdin is not None
    try:
        feed(stream, process.proc.stdin)
        process.proc.stdin.close()
    except BrokenPipeError:
        pass  # the tool stopped early: its exit status and stderr say why
    except BaseException:
        process.kill()
        raise
    process.finish(action)


@dataclass(frozen=True)
class IntegrityReport:
    """What an engine's integrity check found, and what it could not check (and why)."""

    problems: list[str] = field(default_factory=list)
    #: Checks that did not run, e.g. ``amcheck skipped: permission denied …``; not damage.
    skipped: list[str] = field(default_factory=list)


class BackupEngine(ABC):
    """Dump and restore for one backend."""

    backend: str
    #: The artifact's extension before ``.zst``.
    extension: str

    @abstractmethod
    @contextmanager
    def dump(self, url: URL) -> Iterator[tuple[IO[bytes], DumpInfo]]:
        """The dump of ``url`` as a stream; leaving the block checks the tool's exit status."""

    @abstractmethod
    def restore(self, url: URL, stream: IO[bytes]) -> None:
        """Load a dump into the database at ``url`` (new and empty, or SQLite: replaced)."""

    @abstractmethod
    def integrity_check(self, url: URL) -> IntegrityReport:
        """What the engine's own integrity check finds wrong in the database at ``url``."""

    def row_counts(self, url: URL) -> dict[str, int]:
        """Rows per table of the database at ``url``."""
        engine = make_engine(url, pooled=False)
        try:
            with connect(engine) as conn:
                return count_rows(conn)
        finally:
            engine.dispose()
