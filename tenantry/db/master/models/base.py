"""The declarative base every master model derives from."""

from __future__ import annotations

from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

from tenantry.db.types import NAMING_CONVENTION, TYPE_ANNOTATION_MAP


class MasterBase(DeclarativeBase):
    """Declarative base of the master (control-plane) schema."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = TYPE_ANNOTATION_MAP
