"""The default store schema's tables served over HTTP, one declaration each.

Products and orders keep their own routes (:mod:`tenantry.api.routes.tenant_data`: a
product's default price, an order's lines priced and totalled at checkout, the plan's
product and monthly order limits); their lines are readable here (``order-items``), never
written, so an order's totals always match its lines.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from tenantry.api.fields import EMAIL_PATTERN, Currency
from tenantry.api.resources.declaration import Resource
from tenantry.api.resources.schemas import NO_NUL
from tenantry.db.tenant.store.models import (
    Attribute,
    Category,
    CmsPage,
    Customer,
    Discount,
    Inventory,
    MediaAsset,
    OrderItem,
    Price,
    ProductAttributeValue,
    ProductCategory,
    SeoSetting,
    Setting,
)

#: A URL segment: lowercase letters, digits and hyphens.
SlugText = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^[a-z0-9-]+$")]
#: A code people type (discounts, attributes).
CodeText = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
]
Email = Annotated[str, StringConstraints(max_length=255, pattern=EMAIL_PATTERN)]

STORE_RESOURCES: list[Resource] = [
    Resource(
        Category,
        "categories",
        create=("parent_id", "slug", "name", "description", "position", "is_active"),
        update=("parent_id", "slug", "name", "description", "position", "is_active"),
        filters=("parent_id", "slug", "is_active"),
        fields={"slug": SlugText},
        title="category",
    ),
    Resource(
        ProductCategory,
        "product-categories",
        create=("product_id", "category_id", "position"),
        update=("position",),
        filters=("product_id", "category_id"),
        title="product category link",
    ),
    Resource(
        Attribute,
        "attributes",
        create=("code", "name", "type", "options"),
        update=("name", "type", "options"),
        filters=("code", "type"),
        fields={
            "code": CodeText,
            "type": Literal["text", "number", "boolean", "select"],
            "options": Annotated[
                list[Annotated[str, StringConstraints(max_length=255, pattern=NO_NUL)]],
                Field(max_length=100),
            ],
        },
        title="attribute",
    ),
    Resource(
        ProductAttributeValue,
        "product-attribute-values",
        create=("product_id", "attribute_id", "value"),
        update=("value",),
        filters=("product_id", "attribute_id"),
        title="product attribute value",
    ),
    Resource(
        Inventory,
        "inventory",
        create=("product_id", "location", "quantity", "reserved"),
        update=("location", "quantity", "reserved"),
        filters=("product_id", "location"),
        fields={"location": CodeText},
        title="inventory",
    ),
    Resource(
        Price,
        "prices",
        create=(
            "product_id",
            "currency",
            "amount_minor",
            "compare_at_minor",
            "price_list",
            "starts_at",
            "ends_at",
        ),
        update=("amount_minor", "compare_at_minor", "starts_at", "ends_at"),
        filters=("product_id", "currency", "price_list"),
        fields={"currency": Currency, "price_list": CodeText},
        title="price",
    ),
    Resource(
        Discount,
        "discounts",
        create=(
            "code",
            "type",
            "value",
            "currency",
            "min_subtotal_minor",
            "usage_limit",
            "starts_at",
            "ends_at",
            "is_active",
        ),
        update=("value", "min_subtotal_minor", "usage_limit", "starts_at", "ends_at", "is_active"),
        filters=("code", "is_active"),
        fields={
            "code": CodeText,
            "type": Literal["percentage", "fixed"],
            "currency": Currency,
        },
        title="discount",
    ),
    Resource(
        Customer,
        "customers",
        create=("email", "first_name", "last_name", "phone", "accepts_marketing"),
        update=("email", "first_name", "last_name", "phone", "accepts_marketing"),
        filters=("email",),
        fields={"email": Email},
        title="customer",
    ),
    Resource(
        OrderItem,
        "order-items",
        filters=("order_id", "product_id"),
        delete=False,
        title="order line",
    ),
    Resource(
        CmsPage,
        "cms-pages",
        create=("slug", "title", "body", "is_published", "published_at"),
        update=("slug", "title", "body", "is_published", "published_at"),
        filters=("slug", "is_published"),
        fields={"slug": SlugText},
        title="CMS page",
    ),
    Resource(
        MediaAsset,
        "media",
        create=("filename", "mime_type", "size_bytes", "storage_key", "alt_text", "product_id"),
        update=("filename", "alt_text", "product_id"),
        filters=("product_id", "mime_type"),
        fields={
            "mime_type": Annotated[
                str, StringConstraints(max_length=127, pattern=r"^[a-z0-9.+-]+/[a-z0-9.+-]+$")
            ]
        },
        title="media asset",
    ),
    Resource(
        SeoSetting,
        "seo-settings",
        create=(
            "entity_type",
            "entity_id",
            "meta_title",
            "meta_description",
            "canonical_url",
            "robots",
        ),
        update=("meta_title", "meta_description", "canonical_url", "robots"),
        filters=("entity_type", "entity_id"),
        fields={"entity_type": Literal["store", "product", "category", "cms_page"]},
        title="SEO setting",
    ),
    Resource(
        Setting,
        "settings",
        create=("key", "value"),
        update=("value",),
        fields={
            "key": Annotated[
                str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")
            ]
        },
        title="setting",
    ),
]
