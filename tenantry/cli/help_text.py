"""Command help that reads as prose: docstrings are wrapped for the source, not the terminal.

Typer keeps the single line breaks of a docstring's later paragraphs, so help printed in a
terminal of another width breaks mid-sentence. Each paragraph is joined into one line here
(paragraphs stay apart) and Rich wraps it to the terminal.
"""

from __future__ import annotations

import inspect

import typer


def prose(doc: str) -> str:
    """``doc`` with each paragraph on one line."""
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


def reflow(app: typer.Typer) -> None:
    """Give every command and group of ``app`` (recursively) its help as :func:`prose`."""
    for command in app.registered_commands:
        doc = command.help or inspect.getdoc(command.callback) or ""
        if doc:
            command.help = prose(doc)
    if app.registered_callback is not None:
        callback = app.registered_callback
        doc = callback.help or inspect.getdoc(callback.callback) or ""
        if doc:
            callback.help = prose(doc)
    for group in app.registered_groups:  # their own help is one line, given to typer.Typer
        if group.typer_instance is not None:
            reflow(group.typer_instance)
