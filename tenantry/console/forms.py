"""What the console's forms share: an error shown beside the form that caused it (in the
API's words, its status named), and the reading of the provisioning fields.

A form shown again with its error is answered 200: the answer is the page holding the form,
and a browser reports every 4xx page it loads as an error in its console. Refusals (a viewer,
a missing CSRF token) are not a form's error: they get the console's 403 page.
"""

from __future__ import annotations

from dataclasses import dataclass

from tenantry.api.errors import status_for
from tenantry.db.master.models import ProvisioningMode
from tenantry.errors import Forbidden, InvalidInput, TenantryError, Unauthorized


@dataclass(frozen=True)
class FormError:
    """An error to show beside the form named ``form``."""

    form: str
    message: str
    hint: str | None
    status: int


def form_error(form: str, exc: TenantryError) -> FormError:
    """``exc`` shown beside ``form``. A refusal (a viewer, a stale session) is not a form's
    error: it is raised again, for the console's 401/403 page."""
    if isinstance(exc, Forbidden | Unauthorized):
        raise exc
    return FormError(form, exc.message, exc.hint, status_for(exc))


@dataclass(frozen=True)
class ProvisionChoice:
    """Where a store's database goes: a new one (on ``server``, or a SQLite file when None),
    or the existing database at ``url``."""

    mode: ProvisioningMode
    server: str | None
    url: str | None


def provision_choice(form: dict[str, str]) -> ProvisionChoice:
    """The provisioning fields of ``form`` (``mode``, ``server``, ``url``)."""
    try:
        mode = ProvisioningMode(form.get("mode") or ProvisioningMode.CREATE_NEW)
    except ValueError:
        raise InvalidInput(
            f"mode must be create_new or connect_existing, got {form.get('mode')!r}.",
            "Choose where the database goes.",
        ) from None
    if mode is ProvisioningMode.CONNECT_EXISTING:
        url = (form.get("url") or "").strip()
        if not url:
            raise InvalidInput(
                "connect existing needs the database's URL.",
                "Enter a URL such as postgresql://user:password@host:5432/dbname.",
            )
        return ProvisionChoice(mode, None, url)
    return ProvisionChoice(mode, (form.get("server") or "").strip() or None, None)
