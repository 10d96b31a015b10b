"""Model fields for Django models declared over tenantry's tenant schema."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import models

if TYPE_CHECKING:
    _JSONField = models.JSONField[Any, Any]
else:
    _JSONField = models.JSONField


class JsonColumn(_JSONField):
    """A ``JSONField`` for tenantry's JSON columns (``metadata`` and the like). They are
    ``json`` on PostgreSQL, which the driver hands back already parsed, where Django's
    ``JSONField`` (made for ``jsonb``) would parse the value a second time and fail; on
    SQLite both store text, and this is ``JSONField`` itself."""

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        """``value`` as the model holds it: parsed once."""
        if value is None or isinstance(value, str):
            return super().from_db_value(value, expression, connection)
        return value
