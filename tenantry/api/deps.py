"""Dependencies: the platform, a master session, the caller's key and the store it may see."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session

from tenantry.api.openapi import raises
from tenantry.db.master.models import ApiKey, Store
from tenantry.errors import Forbidden, NotFound, Unauthorized
from tenantry.operations.api_access import authenticate_request
from tenantry.operations.dispatch import Dispatcher
from tenantry.runtime import Platform
from tenantry.services import stores
from tenantry.services.apikeys import Scope


def get_platform(request: Request) -> Platform:
    """The process's platform (opened at start-up)."""
    platform: Platform = request.app.state.platform
    return platform


def get_dispatcher(request: Request) -> Dispatcher:
    """Where durable work is handed over (the job queue, unless the app was given another)."""
    dispatcher: Dispatcher = request.app.state.dispatcher
    return dispatcher


PlatformDep = Annotated[Platform, Depends(get_platform)]
DispatcherDep = Annotated[Dispatcher, Depends(get_dispatcher)]


#: Requests that only read; any other method's transactions are the writing kind.
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@raises(503)
def master_session(request: Request, platform: PlatformDep) -> Iterator[Session]:
    """A master session; routes commit what they change, anything else is rolled back.

    A request that may write gets writer sessions: on SQLite a transaction that read first
    could not take the write lock once a worker had written in between.
    """
    sessions = platform.sessions if request.method in READ_METHODS else platform.writer_sessions
    with sessions() as session:
        yield session


MasterDep = Annotated[Session, Depends(master_session)]


@raises(401)
def current_key(
    request: Request,
    platform: PlatformDep,
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> ApiKey:
    """The API key of the request (``Authorization: Bearer …`` or ``X-API-Key``)."""
    presented = x_api_key
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value:
            raise Unauthorized("the Authorization header must be 'Bearer <key>'.")
        presented = value
    if not presented:
        raise Unauthorized(
            "an API key is required.",
            "Create one with `tenantry apikeys create --admin` and send it as "
            "'Authorization: Bearer <key>'.",
        )
    # A request that may write looks its key up as master_session would, in a writer
    # transaction: on SQLite it then queues behind another writer before its route runs.
    reads = platform.sessions if request.method in READ_METHODS else platform.writer_sessions
    return authenticate_request(reads, platform.writer_sessions, presented)


KeyDep = Annotated[ApiKey, Depends(current_key)]


def is_admin(key: ApiKey) -> bool:
    """Whether the key may act on the whole platform."""
    return Scope.ADMIN.value in key.scopes


@raises(403)
def require_admin(key: KeyDep) -> ApiKey:
    """Only platform admin keys pass."""
    if not is_admin(key):
        raise Forbidden("this needs a platform admin key.")
    return key


AdminDep = Annotated[ApiKey, Depends(require_admin)]


def visible_store(master: Session, key: ApiKey, ref: str) -> Store:
    """The store ``ref`` if ``key`` may see it; another store's is a 404, never a 403, so a
    store key cannot even learn which stores exist."""
    try:
        store = stores.get_store(master, ref)
    except NotFound:
        raise NotFound(f"no store {ref!r}.") from None
    if is_admin(key) or (Scope.STORE.value in key.scopes and key.store_id == store.id):
        return store
    raise NotFound(f"no store {ref!r}.")
