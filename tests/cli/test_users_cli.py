"""`tenantry users`: add, list, disable, enable and reset-password.

Proves that a user is added with a password read from stdin (never an argument), stored as an
Argon2 hash that verifies, and listed without it; that a malformed email, an unknown role, a
short password, a duplicate and a missing terminal are each refused with a message saying
what to do and add nothing; that disabling ends the user's sessions and is undone by enable;
that a new password replaces the old one; and that every change is audited without a secret.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from tenantry.cli.main import app
from tenantry.db.master.models import AuditLog, User, UserSession
from tenantry.runtime import Platform
from tenantry.services import login_sessions, users
from tenantry.settings import load_settings
from tests.cli.conftest import Invoke, as_json

PASSWORD = "a long enough passphrase"
Run = Callable[..., Any]


@pytest.fixture
def run(cli: Invoke) -> Run:
    """``run(*args, stdin=...)`` on an initialised installation."""
    assert cli("init").exit_code == 0
    runner = CliRunner()

    def invoke(*args: str, stdin: str | None = None) -> Any:
        return runner.invoke(app, list(args), input=stdin, catch_exceptions=False)

    return invoke


@pytest.fixture
def platform(run: Run) -> Iterator[Platform]:
    opened = Platform.open(load_settings())
    yield opened
    opened.close()


def _user(platform: Platform, email: str) -> User | None:
    with platform.sessions() as session:
        return session.scalar(select(User).where(User.email == email))


def test_add_list_disable_enable_and_reset_password(run: Run, platform: Platform) -> None:
    added = run(
        "users", "add", "Ops@Example.com", "--role", "operator", "--name", "Ops",
        "--password-stdin", "--json", stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    assert as_json(added)["email"] == "ops@example.com"
    user = _user(platform, "ops@example.com")
    assert user is not None
    assert user.role == "operator"
    assert user.password_hash is not None
    assert user.password_hash.startswith("$argon2id$")
    assert users.verify_password(user, PASSWORD)
    assert not users.verify_password(user, PASSWORD + "x")

    listed = run("users", "list", "--json")
    assert listed.exit_code == 0
    assert [(u["email"], u["role"], u["active"]) for u in as_json(listed)] == [
        ("ops@example.com", "operator", True)
    ]
    assert "argon2" not in listed.stdout

    with platform.writer_sessions.begin() as session:
        login_sessions.start(session, user, ip_address="10.0.0.1", user_agent=None)
    assert run("users", "disable", "ops@example.com").exit_code == 0
    disabled = _user(platform, "ops@example.com")
    assert disabled is not None
    assert disabled.is_active is False
    with platform.sessions() as session:
        assert session.scalars(select(UserSession)).all() == []  # signed out at once
    assert run("users", "enable", "ops@example.com").exit_code == 0
    enabled = _user(platform, "ops@example.com")
    assert enabled is not None
    assert enabled.is_active is True

    new = "another long passphrase"
    reset = run("users", "reset-password", "ops@example.com", "--password-stdin", stdin=new)
    assert reset.exit_code == 0, reset.output
    changed = _user(platform, "ops@example.com")
    assert changed is not None
    assert users.verify_password(changed, new)
    assert not users.verify_password(changed, PASSWORD)

    with platform.sessions() as session:
        entries = session.scalars(select(AuditLog).order_by(AuditLog.created_at)).all()
    actions = [e.action for e in entries if e.target_type == "user"]
    assert actions == ["user.add", "user.disable", "user.enable", "user.reset_password"]
    dumped = json.dumps([e.details for e in entries])
    assert PASSWORD not in dumped
    assert new not in dumped
    assert entries[1].details == {"sessions_ended": 1}


@pytest.mark.parametrize(
    ("args", "stdin", "says"),
    [
        (("not-an-email", "--role", "viewer"), PASSWORD, "is not an email address"),
        (("a@example.com", "--role", "admin"), PASSWORD, "unknown role 'admin'"),
        (("a@example.com", "--role", "viewer"), "pw-x1", "at least 12 characters"),
        (("a@example.com", "--role", "viewer"), None, "--password-stdin"),
    ],
)
def test_bad_input_is_refused_and_adds_nothing(
    run: Run, platform: Platform, args: tuple[str, ...], stdin: str | None, says: str
) -> None:
    flags = ("--password-stdin",) if stdin is not None else ()
    refused = run("users", "add", *args, *flags, stdin=stdin)
    assert refused.exit_code != 0
    assert says in refused.output
    assert "pw-x1" not in refused.output  # never echoed
    with platform.sessions() as session:
        assert session.scalars(select(User)).all() == []


def test_a_duplicate_email_is_a_conflict(run: Run, platform: Platform) -> None:
    assert run("users", "add", "a@example.com", "--role", "owner", "--password-stdin",
               stdin=PASSWORD).exit_code == 0  # fmt: skip
    again = run(
        "users", "add", "A@example.com", "--role", "viewer", "--password-stdin", stdin=PASSWORD
    )
    assert again.exit_code != 0
    assert "already exists" in again.output
    with platform.sessions() as session:
        assert [u.role for u in session.scalars(select(User))] == ["owner"]
    missing = run("users", "disable", "nobody@example.com")
    assert missing.exit_code != 0
    assert "no user" in missing.output
