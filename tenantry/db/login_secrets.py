"""Login passwords: generated, checked, and turned into what the server stores (a
PostgreSQL SCRAM-SHA-256 verifier, a MariaDB native-password hash), so that the password
itself never travels in a statement a server could log."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

from tenantry.errors import InvalidInput

# Printable ASCII without quotes, backslash or space: nothing a SQL literal or a URL would
# have to escape, and what every driver can encode.
_PASSWORD = re.compile(r"[!#-&(-\[\]-~]{16,128}")
_SCRAM_ITERATIONS = 4096


def generate_password() -> str:
    """A new random password (256 bits, URL-safe characters)."""
    return secrets.token_urlsafe(32)


def check_password(password: str) -> str:
    """``password`` when it may be a login's password, else :class:`InvalidInput`."""
    if not _PASSWORD.fullmatch(password):
        raise InvalidInput(
            "the login password is not allowed.",
            "Use 16 to 128 printable ASCII characters without spaces, quotes or backslashes "
            "(or let tenantry generate one).",
        )
    return password


def scram_verifier(password: str, *, salt: bytes | None = None) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for ``password`` (RFC 7677), which it
    accepts in place of the password itself."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, _SCRAM_ITERATIONS)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${_SCRAM_ITERATIONS}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def native_password_hash(password: str) -> str:
    """MariaDB's ``mysql_native_password`` hash of ``password``."""
    # MariaDB's mysql_native_password: '*' + SHA1(SHA1(password)) in upper-case hex.
    return "*" + hashlib.sha1(hashlib.sha1(password.encode()).digest()).hexdigest().upper()
