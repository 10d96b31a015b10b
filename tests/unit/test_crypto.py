"""Encryption keys: the key file, TENANTRY_SECRET_KEYS and rotation order."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr

from tenantry.crypto import ensure_key_file, load_keys
from tenantry.errors import ConfigurationError
from tenantry.settings import Settings


def test_key_file_is_private_and_created_once(tmp_path: Path) -> None:
    path = tmp_path / "data" / "secret.key"
    assert ensure_key_file(path) is True
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = path.read_bytes()
    assert ensure_key_file(path) is False
    assert path.read_bytes() == first
    token = load_keys(Settings(data_dir=tmp_path / "data")).encrypt(b"s3cret")
    assert Fernet(first.strip()).decrypt(token) == b"s3cret"


def test_env_keys_first_encrypts_all_decrypt(tmp_path: Path) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    legacy_token = Fernet(old).encrypt(b"pw")
    keys = load_keys(Settings(data_dir=tmp_path, secret_keys=SecretStr(f"{new}, {old}")))
    assert keys.decrypt(legacy_token) == b"pw"
    assert Fernet(new).decrypt(keys.encrypt(b"pw")) == b"pw"


def test_missing_or_bad_keys_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as missing:
        load_keys(Settings(data_dir=tmp_path))
    assert "tenantry init" in (missing.value.hint or "")
    with pytest.raises(ConfigurationError) as bad:
        load_keys(Settings(data_dir=tmp_path, secret_keys=SecretStr("not-a-key")))
    assert "key #1 in TENANTRY_SECRET_KEYS" in bad.value.message
    assert "not-a-key" not in str(bad.value)
