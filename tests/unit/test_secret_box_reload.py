"""A box made from the key file follows it: after `keys rotate` replaces the file, a running
process seals under the new primary key and opens what was resealed, also once the old keys
are retired; a file that does not parse (being edited) leaves the loaded keys in use."""

from __future__ import annotations

from pathlib import Path

from cryptography.fernet import Fernet
from pydantic import SecretStr

from tenantry.crypto import SecretBox, ensure_key_file, write_key_file
from tenantry.settings import Settings


def test_box_follows_the_replaced_key_file(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    ensure_key_file(settings.key_file)
    old = settings.key_file.read_bytes().strip()
    running = SecretBox.from_settings(settings)  # a process started before the rotation
    assert running.open(running.seal("before")) == "before"

    new = Fernet.generate_key()
    write_key_file(settings.key_file, [new])  # rotated, old key retired
    assert Fernet(new).decrypt(running.seal("after").encode()) == b"after"
    assert running.open(Fernet(new).encrypt(b"resealed").decode()) == "resealed"
    assert not running.can_open(Fernet(old).encrypt(b"x").decode())


def test_unparsable_key_file_keeps_the_loaded_keys(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    ensure_key_file(settings.key_file)
    running = SecretBox.from_settings(settings)
    token = running.seal("kept")
    settings.key_file.write_text("half-typed-key\n")
    assert running.open(token) == "kept"


def test_env_keys_are_not_replaced_by_a_key_file(tmp_path: Path) -> None:
    env_key = Fernet.generate_key()
    settings = Settings(data_dir=tmp_path, secret_keys=SecretStr(env_key.decode()))
    box = SecretBox.from_settings(settings)
    write_key_file(settings.key_file, [Fernet.generate_key()])
    assert Fernet(env_key).decrypt(box.seal("env").encode()) == b"env"
