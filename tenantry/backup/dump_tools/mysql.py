"""MySQL/MariaDB: ``mariadb-dump --single-transaction`` (or ``mysqldump``), restored by the
``mariadb`` (or ``mysql``) client, checked by ``CHECK TABLE``."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from sqlalchemy import inspect, text
from sqlalchemy.engine import URL

from tenantry.backup.dump_tools.base import (
    BackupEngine,
    DumpInfo,
    IntegrityReport,
    ToolProcess,
    count_rows,
    dump_output,
    find_tool,
    pipe_into,
    tool_version,
)
from tenantry.db.engines import connect, make_engine
from tenantry.db.tls import check_transport, mysql_tool_args


@contextmanager
def _mysql_options(url: URL) -> Iterator[list[str]]:
    """Connection options for the MySQL tools; the password goes in a 0600 option file."""
    check_transport(url)  # the tools connect on their own: the same policy as engines
    with tempfile.NamedTemporaryFile("w", prefix="tenantry-my-", suffix=".cnf") as options:
        os.chmod(options.name, 0o600)
        options.write("[client]\n")
        if url.password is not None:
            escaped = str(url.password).replace("\\", "\\\\").replace('"', '\\"')
            options.write(f'password="{escaped}"\n')
        options.flush()
        args = [
            f"--defaults-extra-file={options.name}",
            f"--host={url.host or '127.0.0.1'}",
            f"--port={url.port or 3306}",
            "--default-character-set=utf8mb4",
            *mysql_tool_args(url),
        ]
        if url.username:
            args.append(f"--user={url.username}")
        yield args


class MySQLEngine(BackupEngine):
    """``mariadb-dump --single-transaction``; restored by the ``mariadb`` client."""

    backend = "mysql"
    extension = "sql"

    @contextmanager
    def dump(self, url: URL) -> Iterator[tuple[IO[bytes], DumpInfo]]:
        tool = find_tool("mariadb-dump", "mysqldump")
        engine = make_engine(url, pooled=False)
        try:
            with connect(engine) as conn:
                conn.exec_driver_sql("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
                counts = count_rows(conn)
                server = str(conn.execute(text("SELECT VERSION()")).scalar_one())
                conn.rollback()
        finally:
            engine.dispose()
        info = DumpInfo(counts, False, server, Path(tool).name, tool_version(tool))
        with _mysql_options(url) as options:
            args = [
                tool,
                *options,
                "--single-transaction",
                "--quick",
                "--routines",
                "--triggers",
                "--hex-blob",
                "--no-tablespaces",
                "--skip-lock-tables",
                str(url.database),
            ]
            with dump_output(ToolProcess(args, {}, url, stdin=False)) as out:
                yield out, info

    def restore(self, url: URL, stream: IO[bytes]) -> None:
        client = find_tool("mariadb", "mysql")
        with _mysql_options(url) as options:
            args = [client, *options, "--batch", "--init-command=SET autocommit=0"]
            process = ToolProcess([*args, str(url.database)], {}, url, stdin=True)
            pipe_into(process, stream, "restore into")

    def integrity_check(self, url: URL) -> IntegrityReport:
        engine = make_engine(url, pooled=False)
        problems: list[str] = []
        try:
            with connect(engine) as conn:
                tables = inspect(conn).get_table_names()
                if not tables:
                    return IntegrityReport()
                quoted = ", ".join(conn.dialect.identifier_preparer.quote(t) for t in tables)
                for row in conn.exec_driver_sql(f"CHECK TABLE {quoted}"):
                    table, _op, kind, message = row[0], row[1], row[2], row[3]
                    if str(kind).lower() == "error" or (
                        str(kind).lower() == "status" and str(message).lower() != "ok"
                    ):
                        problems.append(f"{table}: {message}")
        finally:
            engine.dispose()
        return IntegrityReport(problems)
