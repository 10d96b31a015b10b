"""`tenantry apikeys` and `tenantry keys` (rotation of the keys that seal stored secrets)."""

from __future__ import annotations

from pathlib import Path

from cryptography.fernet import Fernet
from sqlalchemy import select

from tenantry.crypto import SecretBox
from tenantry.db.master.models import ProvisioningJob
from tenantry.runtime import Platform
from tenantry.settings import load_settings
from tests.cli.conftest import Invoke, as_json
from tests.conftest import SERVER_URLS, require_server

SECRET_URL = "postgresql://shop:s3cret-pw@127.0.0.1:1/shop"


def _key_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip()]


def _queued_job_secret(env: dict[str, str] | None = None) -> str:
    """The password of the one queued job, opened with the keys configured now."""
    settings = load_settings(**({"secret_keys": env["TENANTRY_SECRET_KEYS"]} if env else {}))
    platform = Platform.open(settings)
    try:
        with platform.sessions() as session:
            job = session.scalars(select(ProvisioningJob)).one()
            assert job.secret_encrypted is not None
            return SecretBox.from_settings(settings).open(job.secret_encrypted)
    finally:
        platform.close()


def test_admin_key_is_shown_once(cli: Invoke) -> None:
    assert cli("init").exit_code == 0
    created = cli("apikeys", "create", "--admin", "--name", "ops", "--json")
    assert created.exit_code == 0, created.output
    doc = as_json(created)
    assert doc["scope"] == "admin"
    key = doc["key"]
    assert key.startswith(f"tnt_{doc['prefix']}_")

    human = cli("apikeys", "create", "--app", "portal")
    assert human.exit_code == 0
    assert "shown once" in human.stdout

    listed = cli("apikeys", "list", "--json")
    assert listed.exit_code == 0
    keys = as_json(listed)
    assert {k["scope"] for k in keys} == {"admin", "app"}
    assert key not in listed.output
    assert key.rsplit("_", 1)[1] not in listed.output
    assert all("hash" not in field for k in keys for field in k)
    assert key not in cli("apikeys", "list").output

    revoked = cli("apikeys", "revoke", doc["prefix"], "--json")
    assert revoked.exit_code == 0, revoked.output
    after = {k["prefix"]: k for k in as_json(cli("apikeys", "list", "--json"))}
    assert after[doc["prefix"]]["revoked_at"] is not None

    assert cli("apikeys", "create").exit_code == 2
    assert cli("apikeys", "create", "--admin", "--app", "x").exit_code == 2
    assert cli("apikeys", "create", "--store", "no-such-store").exit_code == 1


def test_store_key_names_its_store(cli: Invoke) -> None:
    assert cli("init").exit_code == 0
    assert cli("stores", "create", "keyed", "--name", "K").exit_code == 0
    doc = as_json(cli("apikeys", "create", "--store", "keyed", "--json"))
    assert doc["scope"] == "store"
    listed = as_json(cli("apikeys", "list", "--json"))
    assert listed[0]["store"] == "keyed"


def test_rotate_with_key_file_keeps_every_secret_readable(cli: Invoke, tmp_path: Path) -> None:
    assert cli("init").exit_code == 0
    key_file = tmp_path / "data" / "secret.key"
    original = _key_lines(key_file)
    assert len(original) == 1
    assert cli("stores", "create", "sealed", "--name", "S").exit_code == 0
    assert cli("provision", "sealed", "--connect", SECRET_URL).exit_code == 0  # queued

    rotated = cli("keys", "rotate", "--json")
    assert rotated.exit_code == 0, rotated.output
    doc = as_json(rotated)
    assert doc["resealed"]["jobs"] == 1
    assert doc["resealed"]["total"] == 1
    keys = _key_lines(key_file)
    assert len(keys) == 2
    assert keys[1] == original[0]
    assert _queued_job_secret() == "s3cret-pw"

    retired = cli("keys", "rotate", "--retire-old")
    assert retired.exit_code == 0, retired.output
    assert "re-encrypted 1 secret(s)" in retired.stdout
    final = _key_lines(key_file)
    assert len(final) == 1
    assert final[0] not in keys
    assert _queued_job_secret() == "s3cret-pw"
    assert "s3cret-pw" not in rotated.output + retired.output


def test_rotate_keeps_servers_usable(cli: Invoke, tmp_path: Path) -> None:
    require_server("postgresql")
    assert cli("init").exit_code == 0
    added = cli("servers", "add", "pg", "--url", SERVER_URLS["postgresql"])
    assert added.exit_code == 0, added.output

    rotated = cli("keys", "rotate", "--json")
    assert rotated.exit_code == 0, rotated.output
    assert as_json(rotated)["resealed"]["servers"] == 1
    assert cli("servers", "check", "pg").exit_code == 0

    assert cli("keys", "rotate", "--retire-old").exit_code == 0
    assert len(_key_lines(tmp_path / "data" / "secret.key")) == 1
    checked = cli("servers", "check", "pg", "--json")
    assert checked.exit_code == 0, checked.output
    assert as_json(checked)["ok"] is True


def test_rotate_with_env_keys_generates_nothing(cli: Invoke, tmp_path: Path) -> None:
    old = Fernet.generate_key().decode()
    env = {"TENANTRY_SECRET_KEYS": old}
    assert cli("init", env=env).exit_code == 0
    assert not (tmp_path / "data" / "secret.key").exists()
    assert cli("stores", "create", "env-keys", "--name", "E", env=env).exit_code == 0
    assert cli("provision", "env-keys", "--connect", SECRET_URL, env=env).exit_code == 0

    generated = cli("keys", "generate")
    assert generated.exit_code == 0
    new = generated.stdout.strip()
    Fernet(new.encode())  # a valid key

    both = {"TENANTRY_SECRET_KEYS": f"{new},{old}"}
    rotated = cli("keys", "rotate", env=both)
    assert rotated.exit_code == 0, rotated.output
    assert "re-encrypted 1 secret(s)" in rotated.stdout
    assert "TENANTRY_SECRET_KEYS" in rotated.stdout
    assert not (tmp_path / "data" / "secret.key").exists()

    only_new = {"TENANTRY_SECRET_KEYS": new}
    assert _queued_job_secret(only_new) == "s3cret-pw"
    refused = cli("keys", "rotate", "--retire-old", env=only_new)
    assert refused.exit_code == 2
