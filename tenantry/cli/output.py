"""Console output shared by every command: Rich for people, one JSON document for scripts."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from datetime import datetime
from typing import Any, ParamSpec, TypeVar

import typer
from rich.console import Console

from tenantry.errors import (
    ConfigurationError,
    InvalidInput,
    NotOwner,
    TenantryError,
    UnidentifiedDatabase,
    WrongDatabase,
)

console = Console(highlight=False)
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
                emit_json(
                    {
                        "error": {
                            "type": type(exc).__name__,
                            "message": exc.message,
                            "hint": exc.hint,
                            "exit_code": code,
                        }
                    }
                )
            else:
                err_console.print(f"[bold red]error:[/] {exc.message}")
                if exc.hint:
                    err_console.print(f"[dim]{exc.hint}[/]")
            raise typer.Exit(code) from None

    return wrapper


JSON_OPTION = typer.Option(False, "--json", help="Print one JSON document instead of tables.")
