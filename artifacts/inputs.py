"""What a build starts from: every accepted spec (canonical JSON) and every source or static
zip, stored content-addressed under its sha256 in the control database (`app_specs`,
`app_sources`; the API creates the tables, services.api.store). The API writes them when it
accepts a request; the builder reads them by the digest the event names. Immutable: a
digest stored once never changes, so a second write is a no-op."""

from __future__ import annotations

from typing import Any


async def store_spec(conn: Any, digest: str, body: str) -> None:
    await conn.execute(
        "INSERT INTO app_specs (sha256, body, size) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        digest, body, len(body.encode()),
    )


async def load_spec_body(conn: Any, digest: str) -> str | None:
    return await conn.fetchval("SELECT body FROM app_specs WHERE sha256 = $1", digest)


async def store_source(conn: Any, digest: str, body: bytes) -> None:
    """An edited source tree (zip, `hostplane app deploy --source`) or a static bundle."""
    await conn.execute(
        "INSERT INTO app_sources (sha256, body, size) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        digest, body, len(body),
    )


async def load_source_body(conn: Any, digest: str) -> bytes | None:
    return await conn.fetchval("SELECT body FROM app_sources WHERE sha256 = $1", digest)
