"""The README's first example of the public API runs as written, on a fresh installation."""

from __future__ import annotations

from pathlib import Path

from tenantry.settings import Settings
from tests.platform_fixtures import settings

__all__ = ["settings"]

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_example() -> str:
    text = README.read_text()
    section = text[text.index("## Build your SaaS on tenantry") :]
    start = section.index("```python\n") + len("```python\n")
    return section[start : section.index("```", start)]


def test_the_readme_example_runs(settings: Settings) -> None:
    code = readme_example()
    assert "Tenantry.from_env(" in code
    exec(compile(code, str(README), "exec"), {"__name__": "readme"})
