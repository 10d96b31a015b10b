"""No views: the bench only runs management commands."""

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []
