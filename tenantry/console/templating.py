"""Rendering console pages: one Jinja2 environment (autoescaped), the filters pages share,
and the context every page gets (who is signed in, their CSRF token)."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from tenantry.db.master.models import lifecycle_status
from tenantry.services.usage import human_bytes
from tenantry.version import __version__

TEMPLATES_DIR = Path(str(resources.files("tenantry.console").joinpath("templates")))
STATIC_DIR = Path(str(resources.files("tenantry.console").joinpath("static")))

#: Jinja2Templates turns autoescape on for .html templates: every value is escaped.
templates = Jinja2Templates(directory=TEMPLATES_DIR)


def age(when: datetime | None, now: datetime | None = None) -> str:
    """How long ago ``when`` was, for people (``3 h``, ``2 d``); ``never`` for None."""
    if when is None:
        return "never"
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = int(((now or datetime.now(UTC)) - when).total_seconds())
    if seconds < 60:
        return f"{max(seconds, 0)} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


def stamp(when: datetime | None) -> str:
    """A time as ``2026-12-04 05:12 UTC`` (empty for None)."""
    if when is None:
        return ""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def limit(value: int | None) -> str:
    """A plan limit (``unlimited`` for None)."""
    return "unlimited" if value is None else f"{value:,}"


templates.env.filters["age"] = age
templates.env.filters["stamp"] = stamp
templates.env.filters["human_bytes"] = human_bytes
templates.env.filters["limit"] = limit
templates.env.filters["lifecycle"] = lifecycle_status
templates.env.globals["version"] = __version__


def render(
    request: Request, name: str, context: dict[str, Any] | None = None, *, status: int = 200
) -> HTMLResponse:
    """The template ``name`` rendered for ``request``; the signed-in user (if any) and their
    CSRF token are in every page's context (``user``, ``csrf``)."""
    user = getattr(request.state, "console_user", None)
    full = {
        "user": user.principal if user is not None else None,
        "csrf": user.csrf if user is not None else "",
        "path": request.url.path,
        **(context or {}),
    }
    return templates.TemplateResponse(request, name, full, status_code=status)
