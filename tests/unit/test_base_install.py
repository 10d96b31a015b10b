"""The README's first command installs tenantry without extras (`pip install -e .`): no
greenlet, so SQLAlchemy's asyncio support is unavailable. Everything `tenantry up`, the worker,
the CLI and the HTTP API import must load without it (a module-level import of
`sqlalchemy.ext.asyncio` on that path broke `tenantry up` on a base install once), and every
command's help must render (a `[/DATABASE]` in a docstring was read as Rich markup and
`tenantry provision --help` crashed)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# Every module the base install's commands load: the CLI's commands, the API app, the worker.
BASE_PATH_MODULES = (
    "tenantry.cli.main",
    "tenantry.cli.serve",
    "tenantry.api.app",
    "tenantry.jobs.queue",
    "tenantry.runtime",
    "tenantry.services.routing",
    "tenantry.operations.provision",
    "tenantry.console.app",
)


def test_the_server_worker_and_cli_load_without_the_async_extra() -> None:
    script = textwrap.dedent(
        f"""
        import importlib, importlib.abc, sys

        class NoGreenlet(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "greenlet" or name.startswith("greenlet."):
                    raise ImportError("greenlet is not installed (base install)")
                return None

        sys.meta_path.insert(0, NoGreenlet())
        for module in {BASE_PATH_MODULES!r}:
            importlib.import_module(module)
        import click, typer
        from typer.testing import CliRunner
        from tenantry.cli.main import app

        runner = CliRunner()

        def walk(command, path):  # every command's help, which loads its module
            result = runner.invoke(app, [*path, "--help"])
            assert result.exit_code == 0, (path, result.output[-2000:])
            if hasattr(command, "list_commands"):
                ctx = click.Context(command)
                for name in command.list_commands(ctx):
                    walk(command.get_command(ctx, name), [*path, name])

        walk(typer.main.get_command(app), [])
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok")
