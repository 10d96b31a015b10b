"""Console output shared by every command: Rich for people, one JSON document for scripts."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from datetime import datetime
from typing import Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from tenantry.errors import (
    ConfigurationError,
    InvalidInput,
    NotOwner,
    TenantryError,
    UnidentifiedDatabase,
    WrongDatabase,
)

#: The width of output that goes to a pipe or a file: Rich's own default there is 80 columns,
#: which folds a table's ids and slugs over several lines, so `| grep` and `> file` lose them.
PIPED_WIDTH = 1000


def _stdout_width() -> int | None:
    """None (Rich measures the terminal, or reads COLUMNS) on a terminal or when COLUMNS is
    set; :data:`PIPED_WIDTH` otherwise, so each table row stays one line."""
    if os.environ.get("COLUMNS") or sys.stdout.isatty():
        return None
    return PIPED_WIDTH


console = Console(highlight=False, width=_stdout_width())
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

#: Exit codes: 1 a failure or a failed check, 2 bad usage or configuration, 3 a refusal by the
#: wrong-database or ownership guard (nothing was changed).
EXIT_FAILED, EXIT_CONFIG, EXIT_REFUSED = 1, 2, 3

P = ParamSpec("P")
R = TypeVar("R")


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return str(value)


def emit_json(document: Any) -> None:
    """Print one JSON document on stdout."""
    sys.stdout.write(json.dumps(document, default=_default, indent=2) + "\n")
    sys.stdout.flush()


def exit_code_for(exc: TenantryError) -> int:
    """The exit code of a domain error."""
    if isinstance(exc, WrongDatabase | UnidentifiedDatabase | NotOwner):
        return EXIT_REFUSED
    if isinstance(exc, ConfigurationError | InvalidInput):
        return EXIT_CONFIG
    return EXIT_FAILED


def error_document(kind: str, message: str, hint: str | None, code: int) -> dict[str, Any]:
    """The one JSON document of a failed command."""
    return {"error": {"type": kind, "message": message, "hint": hint, "exit_code": code}}


def print_error(message: str, hint: str | None = None, *, label: str = "error:") -> None:
    """One error for people, on stderr: the text is shown as written.

    Messages carry user input and install hints (``pip install 'tenantry[postgres]'``): Rich
    would take their square brackets for markup and drop them, so they are escaped here.
    """
    text = escape(message)
    err_console.print(f"[bold red]{escape(label)}[/] {text}" if label else text)
    if hint:
        err_console.print(f"[dim]{escape(hint)}[/]")


def reports_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn a :class:`TenantryError` into one readable paragraph and a non-zero exit.

    With ``--json`` the error is the command's JSON document: ``{"error": {...}}``.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except TenantryError as exc:
            code = exit_code_for(exc)
            if kwargs.get("json_output"):
                emit_json(error_document(type(exc).__name__, exc.message, exc.hint, code))
            else:
                print_error(exc.message, exc.hint)
            raise typer.Exit(code) from None
        except OSError as exc:
            # A file the command needs: missing, unreadable, a file where a directory should
            # be. Its path and the system's reason say what to fix; a traceback would not.
            where = f" ({exc.filename})" if exc.filename else ""
            message = f"{exc.strerror or type(exc).__name__}{where}."
            hint = "Check the path and its permissions (TENANTRY_DATA_DIR is the data dir)."
            if kwargs.get("json_output"):
                emit_json(error_document(type(exc).__name__, message, hint, EXIT_FAILED))
            else:
                print_error(message, hint)
            raise typer.Exit(EXIT_FAILED) from None
        except Exception as exc:
            trouble = database_trouble(exc)
            if trouble is None:
                raise  # not a database's: reported as unexpected, one level up
            kind, message, hint = trouble
            if kwargs.get("json_output"):
                emit_json(error_document(kind, message, hint, EXIT_FAILED))
            else:
                print_error(message, hint)
            raise typer.Exit(EXIT_FAILED) from None

    return wrapper


def database_trouble(exc: BaseException) -> tuple[str, str, str] | None:
    """What went wrong with a database a command needed, as (kind, message, hint): the
    kinds the HTTP API answers 503 with (:mod:`tenantry.db.trouble`); None when ``exc`` is
    not a database's error. The driver's own text is never shown (it can name hosts and
    users)."""
    # Imported here: `--help` and `--version` import nothing heavy (and an error of
    # SQLAlchemy's can only be raised once it is imported).
    from tenantry.db.trouble import database_trouble as trouble_of

    trouble = trouble_of(exc)
    if trouble is None:
        return None
    advice = trouble.advice_for("the command")
    return (
        trouble.kind,
        f"{trouble.said_for('this command')}; the transaction that failed wrote nothing.",
        f"Run the command again; {advice}" if advice else "Run the command again.",
    )


JSON_OPTION = typer.Option(False, "--json", help="Print one JSON document instead of tables.")
#: The largest offset a database takes (a signed 64-bit integer).
MAX_OFFSET = 2**63 - 1


JSON_FLAG = "--json"
_WANTS_JSON = "tenantry.json"


def _parser_error_as_json(exc: typer.TyperException) -> typer.Exit:
    """Print a parser error (unknown option, missing argument, bad value) as the JSON error
    document; the exit to raise afterwards (2 for usage errors, as without --json)."""
    ctx = getattr(exc, "ctx", None)  # usage errors know the command they were parsing
    path = ctx.command_path if ctx is not None else "tenantry"
    code = exc.exit_code
    emit_json(
        error_document(type(exc).__name__, exc.format_message(), f"See `{path} --help`.", code)
    )
    return typer.Exit(code)


class JsonUsageGroup(TyperGroup):
    """The root command group: with ``--json`` anywhere on the command line, the parser's
    own errors are the JSON error document too, so a script never has to parse a usage
    message. Every subcommand is parsed inside the root's :meth:`invoke`, so one group
    covers them all."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any
    ) -> Any:
        """Parse the root's options; remember whether the command line asks for JSON."""
        wants_json = JSON_FLAG in args
        try:
            ctx = super().make_context(info_name, args, parent, **extra)
        except typer.TyperException as exc:  # the parser's errors (typer vendors click)
            if wants_json:
                raise _parser_error_as_json(exc) from None
            raise
        ctx.meta[_WANTS_JSON] = wants_json
        return ctx

    def invoke(self, ctx: Any) -> Any:
        """Run the subcommand; its parser's errors become JSON when asked for."""
        try:
            return super().invoke(ctx)
        except typer.TyperException as exc:
            if ctx.meta.get(_WANTS_JSON):
                raise _parser_error_as_json(exc) from None
            raise
        except (typer.Exit, typer.Abort, BrokenPipeError):
            raise
        except Exception as exc:
            if os.environ.get(DEBUG_VARIABLE):
                raise
            raise _unexpected(exc, as_json=bool(ctx.meta.get(_WANTS_JSON))) from None


#: Set to show the traceback of an unexpected error instead of one paragraph.
DEBUG_VARIABLE = "TENANTRY_DEBUG"


def _unexpected(exc: Exception, *, as_json: bool) -> typer.Exit:
    """Report an error tenantry did not expect (a bug) as one paragraph, exit 1. Its text
    is not shown: a driver's message can carry hosts, users or parts of a URL."""
    message = f"an unexpected error occurred ({type(exc).__name__}); nothing more is shown."
    hint = f"Run the command again with {DEBUG_VARIABLE}=1 to see the traceback, and report it."
    if as_json:
        emit_json(error_document("InternalError", message, hint, EXIT_FAILED))
    else:
        print_error(message, hint)
    return typer.Exit(EXIT_FAILED)


def confirm_or_exit(question: str, json_output: bool, hint: str) -> None:
    """Ask ``question``; on no, report that nothing was changed and exit 1."""
    try:
        confirmed = typer.confirm(question, err=True)
    except typer.Abort:
        confirmed = False
    if confirmed:
        return
    if json_output:
        emit_json(
            {
                "error": {
                    "type": "Aborted",
                    "message": "not confirmed; nothing was changed.",
                    "hint": hint,
                    "exit_code": EXIT_FAILED,
                }
            }
        )
    else:
        err_console.print("aborted; nothing was changed.")
    raise typer.Exit(EXIT_FAILED)
