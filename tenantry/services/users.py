"""Platform users: owners, operators and viewers, with Argon2-hashed passwords."""

from __future__ import annotations

import contextlib
import re
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from tenantry.db.master.models import User, UserRole, UserSession
from tenantry.db.savepoints import insert_in_savepoint
from tenantry.errors import Conflict, InvalidInput, NotFound
from tenantry.services import audit
from tenantry.services.permissions import Principal

#: NIST SP 800-63B's minimum for a password chosen by its user; no composition rules.
MIN_PASSWORD_LENGTH = 12
#: Argon2 hashes at most this much of a password; longer ones are refused, not truncated.
MAX_PASSWORD_LENGTH = 1024
#: One "@", something on each side, a dot in the domain, no spaces: a typo check, not RFC 5322.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")

_HINT_LIST = "List them with `tenantry users list`."


@lru_cache(maxsize=1)
def hasher() -> PasswordHasher:
    """The password hasher: argon2id with argon2-cffi's current (RFC 9106 low-memory)
    parameters; a hash made with other parameters is replaced at the next login."""
    return PasswordHasher()


def normalise_email(email: str) -> str:
    """``email`` trimmed and lower-cased, or InvalidInput saying what is wrong with it."""
    cleaned = email.strip().lower()
    if len(cleaned) > 255 or not _EMAIL.match(cleaned):
        raise InvalidInput(
            f"{email!r} is not an email address.", "Give an address like ops@example.com."
        )
    return cleaned


def check_password(password: str) -> None:
    """Refuse a password too short or too long to be kept (InvalidInput, never echoing it)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(
            f"the password is too short: it needs at least {MIN_PASSWORD_LENGTH} characters.",
            "Choose a longer one (a passphrase of several words works well).",
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidInput(f"the password is longer than {MAX_PASSWORD_LENGTH} characters.")


def role_of(value: str) -> UserRole:
    """The role named ``value`` (owner, operator, viewer), or InvalidInput listing them."""
    try:
        return UserRole(value.strip().lower())
    except ValueError:
        raise InvalidInput(
            f"unknown role {value!r}.", "Use one of: " + ", ".join(r.value for r in UserRole)
        ) from None


def get_user(session: Session, email: str) -> User:
    """The user with ``email``, or NotFound."""
    user = session.scalar(select(User).where(User.email == normalise_email(email)))
    if user is None:
        raise NotFound(f"no user {email.strip()!r}.", _HINT_LIST)
    return user


def add_user(
    session: Session,
    *,
    email: str,
    password: str,
    role: UserRole,
    name: str | None = None,
    actor: str,
) -> User:
    """Add a user; a second user with the same email is a Conflict."""
    address = normalise_email(email)
    check_password(password)
    taken = Conflict(f"a user {address!r} already exists.", _HINT_LIST)
    if session.scalar(select(func.count()).where(User.email == address)):
        raise taken
    user = User(
        email=address,
        name=(name or address.split("@")[0]).strip()[:255],
        password_hash=hasher().hash(password),
        role=role.value,
        is_active=True,
    )
    if insert_in_savepoint(session, user) is not None:  # added meanwhile by another writer
        raise taken
    audit.record(
        session,
        actor=actor,
        action="user.add",
        target_type="user",
        target_id=address,
        details={"role": role.value},
    )
    return user


def list_users(session: Session) -> list[User]:
    """Every user, by email (callers show no password hash)."""
    return list(session.scalars(select(User).order_by(User.email)))


def _end_sessions(session: Session, user: User) -> int:
    result = session.execute(delete(UserSession).where(UserSession.user_id == user.id))
    return int(getattr(result, "rowcount", 0) or 0)


def set_active(session: Session, email: str, active: bool, *, actor: str) -> User:
    """Enable or disable a user; disabling ends every session of theirs at once. Setting the
    state a user already has changes nothing (and records nothing)."""
    user = get_user(session, email)
    if user.is_active == active:
        return user
    user.is_active = active
    ended = 0 if active else _end_sessions(session, user)
    audit.record(
        session,
        actor=actor,
        action="user.enable" if active else "user.disable",
        target_type="user",
        target_id=user.email,
        details={} if active else {"sessions_ended": ended},
    )
    return user


def reset_password(session: Session, email: str, password: str, *, actor: str) -> User:
    """Give a user a new password; their sessions end (whoever had it is signed out)."""
    user = get_user(session, email)
    check_password(password)
    user.password_hash = hasher().hash(password)
    ended = _end_sessions(session, user)
    audit.record(
        session,
        actor=actor,
        action="user.reset_password",
        target_type="user",
        target_id=user.email,
        details={"sessions_ended": ended},
    )
    return user


def verify_password(user: User, password: str) -> bool:
    """Whether ``password`` is the user's; a hash made with older parameters is replaced
    (in the caller's session)."""
    if user.password_hash is None:
        return False
    try:
        hasher().verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
    if hasher().check_needs_rehash(user.password_hash):
        user.password_hash = hasher().hash(password)
    return True


def burn_time(password: str) -> None:
    """Spend the time a verification takes, for an email with no usable user: an unknown
    address must not answer faster than a wrong password."""
    with contextlib.suppress(VerificationError, InvalidHashError):
        hasher().verify(_dummy_hash(), password)


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return hasher().hash("not the password of anyone at all")


def principal_of(user: User) -> Principal:
    """The principal a signed-in user acts as: an owner or operator as an admin key, a viewer
    as a read-only admin key."""
    return Principal(
        kind="user",
        name=user.email,
        role=user.role,
        read_only=user.role == UserRole.VIEWER,
        scopes=("admin",),
        id=user.id,
    )
