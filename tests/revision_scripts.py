"""Alembic revision files for the tests' own tenant schemas, written the way a plug-in's are."""

from __future__ import annotations

#: A schema's ``env.py``: tenantry's own Alembic environment.
ENV_PY = "from tenantry.db.alembic_env import run\n\nrun()\n"

_HEADER = '''"""{doc}"""

import sqlalchemy as sa
from alembic import op

revision = "{rev}"
down_revision = {down!r}
branch_labels = None
depends_on = None


def downgrade() -> None:
    pass


def upgrade() -> None:
'''


def revision_script(rev: str, down: str | None, body: str, doc: str | None = None) -> str:
    """The text of revision ``rev`` after ``down`` whose ``upgrade()`` is ``body`` (indented
    lines; anything after them is module-level code of the file)."""
    return _HEADER.format(doc=doc or rev, rev=rev, down=down) + body + "\n"
