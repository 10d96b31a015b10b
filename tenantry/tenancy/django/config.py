"""What the Django integration is configured with: ``settings.TENANTRY`` (a dict), else the
environment tenantry reads anyway (``DATABASE_URL``, ``TENANTRY_TENANT_HOST_PATTERN``…).

    TENANTRY = {
        "APP": "mysite.platform.tenantry",   # a Tenantry to use (default: Tenantry.from_env())
        "RESOLVE": ["host", "header:X-Tenant", "path:/t/", "api-key"],   # default ["host"]
        "HOST_PATTERN": "{slug}.example.com",  # default TENANTRY_TENANT_HOST_PATTERN
        "EXEMPT": ["/healthz"],               # paths served without a store
        "TENANT_APPS": ["shop"],              # Django apps whose models live in the store DB
    }
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from tenantry.public.tenantry import Tenantry
from tenantry.tenancy.resolver import TenantResolver
from tenantry.tenancy.strategies import ByApiKey, ByHeader, ByHost, ByPathPrefix, Strategy

KNOWN_KEYS = frozenset({"APP", "RESOLVE", "HOST_PATTERN", "EXEMPT", "TENANT_APPS"})
STRATEGY_NAMES = "'host', 'header[:NAME]', 'path[:/PREFIX/]' or 'api-key'"


@dataclass(frozen=True)
class DjangoTenancy:
    """The Tenantry object, resolver and options of this Django process."""

    app: Tenantry
    resolver: TenantResolver
    exempt: tuple[str, ...]
    tenant_apps: frozenset[str]


def _strategy(entry: object, host_pattern: str | None) -> Strategy:
    if not isinstance(entry, str):
        if hasattr(entry, "find") and hasattr(entry, "name"):
            return entry
        raise ImproperlyConfigured(
            f"TENANTRY['RESOLVE'] holds {entry!r}: each entry is one of {STRATEGY_NAMES}, "
            "or a strategy object such as tenantry.ByHost('{slug}.example.com')."
        )
    kind, _, arg = entry.partition(":")
    kind = kind.strip().lower()
    if kind == "host" and not arg:
        return ByHost(host_pattern)
    if kind == "header":
        return ByHeader(arg or "X-Tenant")
    if kind == "path":
        return ByPathPrefix(arg or "/t/")
    if kind == "api-key" and not arg:
        return ByApiKey()
    raise ImproperlyConfigured(
        f"TENANTRY['RESOLVE'] holds {entry!r}: each entry is one of {STRATEGY_NAMES}."
    )


def _strings(config: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = config.get(key, ())
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ImproperlyConfigured(
            f"TENANTRY[{key!r}] must be a list of strings, e.g. {key!r}: ['/healthz'], "
            f"not {value!r}."
        )
    return tuple(str(v) for v in value)


def _app_of(config: Mapping[str, Any]) -> Tenantry:
    named = config.get("APP")
    if named is None:
        return Tenantry.from_env()
    found = import_string(named) if isinstance(named, str) else named
    if not isinstance(found, Tenantry):
        raise ImproperlyConfigured(
            f"TENANTRY['APP'] = {named!r} is not a Tenantry: name a module attribute holding "
            "one, e.g. 'mysite.platform.tenantry' (or leave it out: Tenantry.from_env())."
        )
    return found


def build(config: Mapping[str, Any]) -> DjangoTenancy:
    """The integration as ``config`` (``settings.TENANTRY``) describes it."""
    unknown = sorted(set(config) - KNOWN_KEYS)
    if unknown:
        raise ImproperlyConfigured(
            f"TENANTRY has unknown key(s) {', '.join(unknown)}; known: "
            f"{', '.join(sorted(KNOWN_KEYS))}."
        )
    resolve = config.get("RESOLVE", ["host"])
    if isinstance(resolve, str) or not isinstance(resolve, Sequence) or not resolve:
        raise ImproperlyConfigured(
            f"TENANTRY['RESOLVE'] must be a non-empty list of {STRATEGY_NAMES}, not {resolve!r}."
        )
    pattern = config.get("HOST_PATTERN")
    strategies = [_strategy(entry, pattern) for entry in resolve]
    exempt = _strings(config, "EXEMPT")
    tenant_apps = frozenset(_strings(config, "TENANT_APPS"))
    app = _app_of(config)
    return DjangoTenancy(app, app.resolver(*strategies), exempt, tenant_apps)


_current: DjangoTenancy | None = None
_lock = threading.Lock()


def tenancy() -> DjangoTenancy:
    """This process's integration, built from ``settings.TENANTRY`` on first use."""
    global _current
    with _lock:
        if _current is None:
            config = getattr(django_settings, "TENANTRY", {})
            if not isinstance(config, Mapping):
                raise ImproperlyConfigured(f"settings.TENANTRY must be a dict, not {config!r}.")
            _current = build(config)
        return _current


def reset() -> None:
    """Forget the integration (tests, or after changing ``settings.TENANTRY``); the
    Tenantry object it used is not closed (its owner closes it)."""
    global _current
    with _lock:
        _current = None
