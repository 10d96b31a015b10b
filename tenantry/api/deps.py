"""Dependencies: the platform, a master session, the caller (key or signed-in user) and the
store it may see."""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session

from tenantry.api.openapi import raises
from tenantry.db.master.models import Store
from tenantry.errors import Forbidden, NotFound, Unauthorized
from tenantry.operations.api_access import authenticate_request, authenticate_session
from tenantry.operations.dispatch import Dispatcher
from tenantry.runtime import Platform
from tenantry.services import stores
from tenantry.services.apikeys import Scope
from tenantry.services.login_sessions import csrf_token
from tenantry.services.permissions import Principal, set_principal


# These two only read app state: as coroutines they run on the event loop, where a plain
# function would cost every request a trip through the thread pool (and its GIL hand-offs).
async def get_platform(request: Request) -> Platform:
    """The process's platform (opened at start-up)."""
    platform: Platform = request.app.state.platform
    return platform


async def get_dispatcher(request: Request) -> Dispatcher:
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


@raises(503)
def master_read_session(platform: PlatformDep) -> Iterator[Session]:
    """A master session in read transactions whatever the method, for a route whose every
    write is an operation's own transaction (it only reads here, before and after): on SQLite
    a writer session would queue on master's one writer lock for those reads too (in a burst
    of 400 stores, a 200 ms queue each time) and hold it while the response is made."""
    with platform.sessions() as session:
        yield session


MasterReadDep = Annotated[Session, Depends(master_read_session)]


#: The cookie that carries a signed-in user's session token (HttpOnly), and the one that
#: carries its CSRF token for the console's script to echo in :data:`CSRF_HEADER`.
SESSION_COOKIE = "tenantry_session"
CSRF_COOKIE = "tenantry_csrf"
CSRF_HEADER = "X-CSRF-Token"


def client_ip(request: Request) -> str:
    """The address the request came from (the proxy's, behind one)."""
    return request.client.host if request.client else "unknown"


@raises(401, 403, 503)
def current_key(
    request: Request,
    platform: PlatformDep,
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> Principal:
    """Who the request acts as: the API key of ``Authorization: Bearer …`` or ``X-API-Key``,
    else the signed-in user of the session cookie (whose requests that may write must send
    the session's CSRF token in ``X-CSRF-Token``). Recorded for the service layer's
    read-only guard."""
    presented = x_api_key
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value:
            raise Unauthorized("the Authorization header must be 'Bearer <key>'.")
        presented = value
    # Looked up in a read transaction whatever the method: on SQLite a writer transaction
    # here queued every write request on master's writer lock twice (once for this read).
    cookie = request.cookies.get(SESSION_COOKIE)
    if presented:
        principal = authenticate_request(
            platform.sessions, platform.writer_sessions, presented, ip_address=client_ip(request)
        )
    elif cookie:
        principal = authenticate_session(
            platform.sessions, platform.writer_sessions, cookie, ip_address=client_ip(request)
        )
        sent = request.headers.get(CSRF_HEADER, "")
        if request.method not in READ_METHODS and not hmac.compare_digest(sent, csrf_token(cookie)):
            raise Forbidden(
                "this request needs the session's CSRF token.",
                f"Send the {CSRF_COOKIE} cookie's value in the {CSRF_HEADER} header.",
            )
    else:
        raise Unauthorized(
            "an API key is required.",
            "Create one with `tenantry apikeys create --admin` and send it as "
            "'Authorization: Bearer <key>', or sign in with POST /auth/login.",
        )
    set_principal(principal)
    return principal


KeyDep = Annotated[Principal, Depends(current_key)]


def is_admin(key: Principal) -> bool:
    """Whether the key (or user) may act on the whole platform."""
    return key.is_admin


@raises(403)
def require_admin(key: KeyDep) -> Principal:
    """Only platform admin keys (and signed-in users) pass."""
    if not is_admin(key):
        raise Forbidden("this needs a platform admin key.")
    return key


AdminDep = Annotated[Principal, Depends(require_admin)]


def visible_store(master: Session, key: Principal, ref: str) -> Store:
    """The store ``ref`` if ``key`` may see it; another store's is a 404, never a 403, so a
    store key cannot even learn which stores exist."""
    try:
        store = stores.get_store(master, ref)
    except NotFound:
        raise NotFound(f"no store {ref!r}.") from None
    if key.is_admin or (Scope.STORE.value in key.scopes and key.store_id == store.id):
        return store
    raise NotFound(f"no store {ref!r}.")
