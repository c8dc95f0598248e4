"""Generated passwords, and the verifiers the servers store instead of them.

A tenant password leaves this process in exactly one place: the tenant's secret.
PostgreSQL receives a SCRAM-SHA-256 verifier and Valkey a SHA-256 hash, both computed
here, so neither server ever sees the plain text — a failed `CREATE ROLE ... PASSWORD`
would otherwise print it in the server log — and "does the role still have this
password?" is answered by recomputing the verifier, without logging in as the tenant.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from pydantic import SecretStr

SCRAM_ITERATIONS = 4096  # PostgreSQL's default (scram_iterations)
SCRAM_SALT_BYTES = 16


def new_password() -> SecretStr:
    """256 random bits, URL-safe so it sits in DATABASE_URL / REDIS_URL unescaped."""
    return SecretStr(secrets.token_urlsafe(32))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def scram_verifier(password: SecretStr, *, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS) -> str:
    """What PostgreSQL stores for a SCRAM-SHA-256 password (RFC 5802/7677). Our passwords
    are ASCII, for which SASLprep is the identity."""
    salt = salt if salt is not None else secrets.token_bytes(SCRAM_SALT_BYTES)
    salted = hashlib.pbkdf2_hmac("sha256", password.get_secret_value().encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    return f"SCRAM-SHA-256${iterations}:{_b64(salt)}${_b64(stored_key)}:{_b64(server_key)}"


def scram_matches(verifier: str | None, password: SecretStr) -> bool:
    """Whether `verifier` (pg_authid.rolpassword) was made from `password`."""
    if not verifier or not verifier.startswith("SCRAM-SHA-256$"):
        return False
    try:
        params = verifier.split("$")[1]
        iterations, salt = params.split(":")
        expected = scram_verifier(password, salt=base64.b64decode(salt), iterations=int(iterations))
    except (ValueError, IndexError):
        return False
    return hmac.compare_digest(expected, verifier)


def valkey_hash(password: SecretStr) -> str:
    """The form Valkey keeps (`#<sha256 hex>` in ACL rules, listed by ACL GETUSER)."""
    return hashlib.sha256(password.get_secret_value().encode()).hexdigest()
