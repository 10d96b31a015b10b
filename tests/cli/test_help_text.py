"""Every command's help reads as prose in any terminal width."""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from tenantry.cli.main import app


def _commands(command: Any, path: str = "tenantry") -> list[tuple[str, Any]]:
    """The command and, for a group, every command under it, by their full names (the
    root's groups are imported as they are asked for, as when they run)."""
    found = [(path, command)]
    if isinstance(command, TyperGroup):
        ctx = typer.Context(command)
        for name in command.list_commands(ctx):
            found.extend(_commands(command.get_command(ctx, name), f"{path} {name}"))
    return found


def test_no_help_paragraph_breaks_mid_sentence() -> None:
    commands = _commands(typer.main.get_command(app))
    assert len(commands) > 40  # every group and command, not just the root
    broken = [
        path
        for path, command in commands
        for paragraph in (command.help or "").split("\n\n")
        if "\n" in paragraph.strip()
    ]
    assert broken == []


def test_fleet_migrate_help_keeps_its_paragraphs() -> None:
    command = dict(_commands(typer.main.get_command(app)))["tenantry fleet migrate"]
    first, *rest = (command.help or "").split("\n\n")
    assert first == "Migrate every active tenant database to the newest (or given) revision."
    assert rest
    assert rest[0].startswith("Each tenant is migrated on its own connection")
    assert "one failure never stops or skips another" in rest[0]
