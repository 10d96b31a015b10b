"""Alembic's ``op`` and ``context`` proxies, per thread.

Alembic points the module-level proxies ``alembic.op`` and ``alembic.context`` at the
running migration by rebinding module globals, so two threads running migrations at once
would run each other's operations (or fail with ``KeyError: 'script'``). Installed once per
process, this keeps one proxy target per thread instead: each thread's scripts see their own
migration, and a fleet run's tenants can run their DDL at the same time.

It replaces ``_install_proxy``/``_remove_proxy`` of the two proxied classes (private
Alembic API, checked with Alembic 1.20); the module-level functions Alembic generated
keep working because they read ``_proxy``, which becomes a per-thread dispatcher.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from alembic.operations import Operations
from alembic.runtime.environment import EnvironmentContext

_current = threading.local()
_installed = False
_install_lock = threading.Lock()


def _stack(cls: type[Any]) -> list[Any]:
    stacks: dict[type[Any], list[Any]] = _current.__dict__.setdefault("stacks", {})
    return stacks.setdefault(cls, [])


class _Dispatch:
    """Stands in for ``_proxy`` in a proxy module: forwards to this thread's target."""

    def __init__(self, cls: type[Any]) -> None:
        self._cls = cls

    def target(self) -> Any:
        stack = _stack(self._cls)
        if not stack:
            raise NameError(
                f"no {self._cls.__name__} is running in this thread (alembic proxy unset)"
            )
        return stack[-1]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.target(), name)

    def __bool__(self) -> bool:
        return bool(_stack(self._cls))


def _proxied(obj: Any) -> type[Any]:
    # Subclasses (a linter's recording Operations) stand in for their proxied base class.
    return Operations if isinstance(obj, Operations) else EnvironmentContext


def _thread_install(self: Any) -> None:
    _stack(_proxied(self)).append(self)


def _thread_remove(self: Any) -> None:
    stack = _stack(_proxied(self))
    if stack and stack[-1] is self:
        stack.pop()


@contextmanager
def running(operations: Operations) -> Iterator[None]:
    """``alembic.op`` means ``operations`` in this thread inside the block."""
    install()
    _thread_install(operations)
    try:
        yield
    finally:
        _thread_remove(operations)


def install() -> None:
    """Make ``alembic.op`` and ``alembic.context`` per-thread (idempotent)."""
    global _installed
    with _install_lock:
        if _installed:
            return
        for cls in (Operations, EnvironmentContext):
            dispatch = _Dispatch(cls)
            attr_names, modules = cls._setups[cls]
            for globals_, _locals in modules:
                running_now = globals_.get("_proxy")
                if running_now is not None:
                    # Installed while Alembic itself runs a migration in this thread (an
                    # env.py importing tenantry): that migration stays this thread's.
                    _stack(cls).append(running_now)
                globals_["_proxy"] = dispatch
                for name in attr_names:  # plain attributes (context.config): per thread too
                    globals_.pop(name, None)
                module = sys.modules[globals_["__name__"]]
                module.__getattr__ = _module_getattr(dispatch, frozenset(attr_names))  # type: ignore[method-assign]
            cls._install_proxy = _thread_install  # type: ignore[method-assign]
            cls._remove_proxy = _thread_remove  # type: ignore[method-assign]
        _installed = True


def _module_getattr(dispatch: _Dispatch, names: frozenset[str]) -> Any:
    def __getattr__(name: str) -> Any:
        if name in names:
            return getattr(dispatch.target(), name)
        raise AttributeError(name)

    return __getattr__
