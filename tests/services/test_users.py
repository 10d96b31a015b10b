"""Passwords of platform users: Argon2id, re-hashed when the parameters change.

Proves that a hash made with weaker (older) parameters still verifies, and is replaced at that
verification by one with the current parameters (which then verifies too), while a wrong
password neither verifies nor replaces anything.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from sqlalchemy import select

from tenantry.db.master.models import User, UserRole
from tenantry.runtime import Platform
from tenantry.services import users
from tests.platform_fixtures import platform, settings

__all__ = ["platform", "settings"]

PASSWORD = "twelve chars or more"


def test_a_hash_with_old_parameters_is_replaced_at_the_next_verification(
    platform: Platform,
) -> None:
    old = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash(PASSWORD)
    with platform.writer_sessions.begin() as session:
        user = users.add_user(
            session, email="o@example.com", password=PASSWORD, role=UserRole.OWNER, actor="cli:test"
        )
        user.password_hash = old
    with platform.writer_sessions.begin() as session:
        user = session.scalars(select(User)).one()
        assert not users.verify_password(user, "wrong password!!")
        assert user.password_hash == old
        assert users.verify_password(user, PASSWORD)
    with platform.sessions() as session:
        stored = session.scalars(select(User.password_hash)).one()
    assert stored is not None
    assert stored != old
    assert not users.hasher().check_needs_rehash(stored)
    assert users.hasher().verify(stored, PASSWORD)
