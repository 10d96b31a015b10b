"""A minimal Django project on tenantry's integration: settings, one unmanaged model over the
store schema's ``products`` table, views through the SQLAlchemy session and the ORM."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

import django
from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        DATABASES={},
        DATABASE_ROUTERS=["tenantry.tenancy.django.TenantDatabaseRouter"],
        MIDDLEWARE=["tenantry.tenancy.django.TenantMiddleware"],
        INSTALLED_APPS=[],
        USE_TZ=True,
        SECRET_KEY="tests-only",
        TENANTRY={},
    )
    django.setup()

from django.db import models
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path, reverse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from sqlalchemy import select

from tenantry import Product
from tenantry.tenancy.django import JsonColumn, tenant_db, tenant_session


class ShopProduct(models.Model):
    """The store schema's products, as a Django app of the project would declare them."""

    id: models.UUIDField[uuid.UUID, uuid.UUID] = models.UUIDField(
        primary_key=True, default=uuid.uuid4
    )
    sku: models.CharField[str, str] = models.CharField(max_length=64)
    slug: models.CharField[str, str] = models.CharField(max_length=255)
    name: models.CharField[str, str] = models.CharField(max_length=255)
    status: models.CharField[str, str] = models.CharField(max_length=32, default="draft")
    is_active: models.BooleanField[bool, bool] = models.BooleanField(default=True)
    metadata: JsonColumn = JsonColumn(default=dict)
    created_at: models.DateTimeField[datetime, datetime] = models.DateTimeField(
        default=timezone.now
    )
    updated_at: models.DateTimeField[datetime, datetime] = models.DateTimeField(
        default=timezone.now
    )

    class Meta:
        app_label = "shop"
        managed = False
        db_table = "products"


def home(request: HttpRequest) -> JsonResponse:
    """Which store this request is for, and the URL of the product list as Django reverses it."""
    store = request.tenant  # type: ignore[attr-defined]
    return JsonResponse({"store": store.slug, "via": store.via, "products": reverse("products")})


@csrf_exempt
def products(request: HttpRequest) -> HttpResponse:
    """GET: the store's products by SKU (SQLAlchemy session); POST {sku, name}: add one."""
    with tenant_session(request) as session:
        if request.method == "POST":
            body = json.loads(request.body)
            session.add(Product(sku=body["sku"], slug=body["sku"].lower(), name=body["name"]))
            return JsonResponse({"sku": body["sku"]}, status=201)
        rows = session.scalars(select(Product.sku).order_by(Product.sku))
        return JsonResponse({"skus": list(rows)})


@csrf_exempt
def orm_products(request: HttpRequest) -> JsonResponse:
    """The store's products through the Django ORM (the router picks the store's alias);
    POST {sku, name} adds one through the ORM."""
    if request.method == "POST":
        body = json.loads(request.body)
        made = ShopProduct.objects.create(
            sku=body["sku"], slug=body["sku"].lower(), name=body["name"]
        )
        return JsonResponse({"sku": made.sku, "id": str(made.id)}, status=201)
    skus = list(ShopProduct.objects.order_by("sku").values_list("sku", flat=True))
    using = ShopProduct.objects.using(tenant_db(request)).count()
    newest = ShopProduct.objects.order_by("-created_at").first()
    created = newest.created_at.isoformat() if newest else None
    return JsonResponse({"skus": skus, "count_using_alias": using, "newest_created": created})


def healthz(request: HttpRequest) -> JsonResponse:
    """Served without a store (TENANTRY['EXEMPT'])."""
    return JsonResponse({"status": "ok"})


urlpatterns = [
    path("", home),
    path("products", products, name="products"),
    path("orm/products", orm_products),
    path("healthz", healthz),
]
