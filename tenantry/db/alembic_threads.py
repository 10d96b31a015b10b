"""Revision scripts' ``op`` and ``context``, per thread, without Alembic's process-wide proxies.

Alembic points ``alembic.op`` and ``alembic.context`` at the running migration by rebinding
globals of those two modules, so two threads running migrations at once would run each other's
operations. tenantry therefore never lets Alembic install them (it runs migrations with
``MigrationContext.run_migrations``, not ``EnvironmentContext.run_migrations``) and, instead,
points the names a revision script bound with ``from alembic import op, context`` at stand-ins
(:func:`bind`) that forward to what :func:`running` set for the calling thread. Each thread's
scripts see their own migration, so a fleet run's tenants run their DDL at the same time.

Only public Alembic API is used: ``Script.module`` and plain ``Operations`` and
``EnvironmentContext`` objects. A helper module that a revision imports and that does its own
``from alembic import op`` is not redirected (Alembic says its proxy "has not yet been
established"); such a helper takes ``op`` as an argument from the revision instead.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from alembic import context as alembic_context
from alembic import op as alembic_op
from alembic.operations import Operations
from alembic.runtime.environment import EnvironmentContext
from alembic.script import Script

_current = threading.local()


def _stack(kind: str) -> list[Any]:
    stacks: dict[str, list[Any]] = _current.__dict__.setdefault("stacks", {})
    return stacks.setdefault(kind, [])


class _ThreadProxy:
    """Stands in for ``alembic.op`` or ``alembic.context`` in a revision module."""

    def __init__(self, kind: str) -> None:
        self._kind = kind

    def __getattr__(self, name: str) -> Any:
        stack = _stack(self._kind)
        if not stack:
            raise NameError(
                f"alembic.{self._kind}.{name} used outside a migration tenantry runs in this "
                "thread (alembic proxy unset)"
            )
        return getattr(stack[-1], name)

    def __repr__(self) -> str:
        return f"<alembic.{self._kind} of the migration running in this thread>"


OP: Any = _ThreadProxy("op")
CONTEXT: Any = _ThreadProxy("context")
_STAND_INS = {id(alembic_op): OP, id(alembic_context): CONTEXT}


def bind(script: Script) -> None:
    """Point ``script``'s ``op`` and ``context`` at this thread's migration (idempotent).

    Any global of the revision module that is the ``alembic.op`` or ``alembic.context``
    module (``from alembic import op``, ``import alembic.op as op``) is replaced.
    """
    module = script.module
    for name, value in list(vars(module).items()):
        stand_in = _STAND_INS.get(id(value))
        if stand_in is not None:
            setattr(module, name, stand_in)


@contextmanager
def running(
    operations: Operations, environment: EnvironmentContext | None = None
) -> Iterator[None]:
    """Inside the block, bound scripts' ``op`` (and ``context``) mean these in this thread."""
    pushed: list[tuple[str, Any]] = [("op", operations)]
    if environment is not None:
        pushed.append(("context", environment))
    for kind, target in pushed:
        _stack(kind).append(target)
    try:
        yield
    finally:
        for kind, _target in pushed:
            _stack(kind).pop()
