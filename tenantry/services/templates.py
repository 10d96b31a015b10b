"""Stale template databases on the registered servers and in the SQLite template dir: which
there are (``tenantry doctor``) and dropping them (``tenantry servers prune-templates``)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.orm import Session

from tenantry.crypto import SecretBox
from tenantry.db import templates
from tenantry.db.schemas import SchemaSpec
from tenantry.db.templates import TemplateDatabase
from tenantry.errors import TenantryError
from tenantry.services import audit
from tenantry.services.connections import server_url
from tenantry.services.servers import list_servers
from tenantry.settings import Settings


def template_dir(settings: Settings) -> Path:
    """Where SQLite template files are kept (see :mod:`tenantry.operations.provision`)."""
    return settings.data_dir / "templates"


@dataclass
class TemplateScan:
    """Every template found, and the servers that could not be looked at (name: why)."""

    found: list[TemplateDatabase] = field(default_factory=list)
    unreachable: dict[str, str] = field(default_factory=dict)

    @property
    def stale(self) -> list[TemplateDatabase]:
        """The stale ones (in use or not)."""
        return [t for t in self.found if t.stale]


def scan(
    session: Session,
    box: SecretBox,
    settings: Settings,
    spec: SchemaSpec,
    *,
    skip: Collection[str] = (),
) -> TemplateScan:
    """The templates of ``spec`` on every active registered server (but those named in
    ``skip``, known not to answer) and in the template dir."""
    result = TemplateScan(found=templates.sqlite_templates(template_dir(settings), spec))
    for server in list_servers(session):
        if not server.is_active or server.name in skip:
            continue
        try:
            result.found.extend(
                templates.server_templates(server_url(box, server), spec, server.name)
            )
        except TenantryError as exc:
            result.unreachable[server.name] = exc.message
    return result


@dataclass(frozen=True)
class PruneReport:
    """What a prune did (or, dry, would do)."""

    dropped: list[TemplateDatabase]
    in_use: list[TemplateDatabase]
    failed: dict[str, str]  # "where/name": why
    unreachable: dict[str, str]
    dry_run: bool


def prune(
    session: Session,
    box: SecretBox,
    settings: Settings,
    spec: SchemaSpec,
    *,
    dry_run: bool,
    actor: str,
) -> PruneReport:
    """Drop every stale template not in use (none when ``dry_run``); audited in ``session``.

    The current head's template and other schemas' templates are never touched; a stale one
    with open connections (a build or clone running now) is left for the next prune.
    """
    found = scan(session, box, settings, spec)
    urls = {s.name: s for s in list_servers(session)}
    dropped: list[TemplateDatabase] = []
    failed: dict[str, str] = {}
    for tpl in found.stale:
        if not tpl.prunable:
            continue
        if dry_run:
            dropped.append(tpl)
            continue
        try:
            if tpl.where == "sqlite":
                templates.drop_sqlite_template(template_dir(settings), tpl.name)
            else:
                templates.drop_server_template(server_url(box, urls[tpl.where]), tpl.name)
        except TenantryError as exc:
            failed[f"{tpl.where}/{tpl.name}"] = exc.message
            continue
        dropped.append(tpl)
    if dropped and not dry_run:
        audit.record(
            session,
            actor=actor,
            action="server.prune_templates",
            target_type="template_database",
            details={"dropped": [f"{t.where}/{t.name}" for t in dropped]},
        )
    return PruneReport(
        dropped,
        [t for t in found.stale if t.in_use],
        failed,
        found.unreachable,
        dry_run,
    )
