"""The releases read model: every release of every tenant, for `tenant releases`, the
dashboard and the rollback checks.

Filled by the API's projection handler from TenantChanged (version, digests, size,
built_at, rollback_of; `requested_by` from the request of its correlation id),
MigrationsApplied (migrated_at) and ReleaseActivated (activated_at). Upserts only, so
events may come twice and in any order. Whether a release is still *retained* is the
artifact store's truth (the builder prunes it); the API asks the store when it lists.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from contracts.envelope import Envelope
from events.store import apply_schema

_SCHEMA_LOCK = 0x72656c21  # "rel!"
SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS tenant_releases (
    tenant_id      text    NOT NULL,
    version        integer NOT NULL,
    sha256         text,
    spec_sha256    text,
    size           bigint,
    built_at       timestamptz,
    migrated_at    timestamptz,
    activated_at   timestamptz,
    requested_by   text,
    rollback_of    integer,
    correlation_id uuid,
    PRIMARY KEY (tenant_id, version)
);
"""
COLUMNS = ("version", "sha256", "spec_sha256", "size", "built_at", "migrated_at", "activated_at",
           "requested_by", "rollback_of")


async def ensure_schema(db: Any) -> None:
    await apply_schema(db, SCHEMA_SQL, _SCHEMA_LOCK)


async def record(conn: Any, envelope: Envelope[Any]) -> None:
    """Fold one event into the read model (inside the projection's transaction)."""
    tenant, data, at = envelope.tenant_id, envelope.data, envelope.occurred_at
    if envelope.event_type == "TenantChanged":
        actor = await conn.fetchval("SELECT requested_by FROM tenant_requests WHERE tenant_id = $1 "
                                    "AND correlation_id = $2", tenant, envelope.correlation_id)
        # A different artifact under the same version (a tenant deleted and created again)
        # starts the row afresh; the same one only fills what is missing.
        await conn.execute(
            """
            INSERT INTO tenant_releases (tenant_id, version, sha256, spec_sha256, size, built_at, requested_by,
                                         rollback_of, correlation_id)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
            ON CONFLICT (tenant_id, version) DO UPDATE SET
                migrated_at = CASE WHEN tenant_releases.sha256 IS DISTINCT FROM $3
                                   AND tenant_releases.sha256 IS NOT NULL THEN NULL
                                   ELSE tenant_releases.migrated_at END,
                activated_at = CASE WHEN tenant_releases.sha256 IS DISTINCT FROM $3
                                    AND tenant_releases.sha256 IS NOT NULL THEN NULL
                                    ELSE tenant_releases.activated_at END,
                sha256 = $3, spec_sha256 = $4, size = $5,
                built_at = LEAST(tenant_releases.built_at, $6), requested_by = COALESCE($7, tenant_releases.requested_by),
                rollback_of = $8, correlation_id = COALESCE($9, tenant_releases.correlation_id)
            """,
            tenant, data.version, data.sha256, data.spec_sha256, data.size, at, actor, data.rollback_of,
            envelope.correlation_id,
        )
    elif envelope.event_type in ("MigrationsApplied", "ReleaseActivated"):
        column = "migrated_at" if envelope.event_type == "MigrationsApplied" else "activated_at"
        await conn.execute(
            f"INSERT INTO tenant_releases (tenant_id, version, {column}) VALUES ($1, $2, $3) "
            f"ON CONFLICT (tenant_id, version) DO UPDATE SET {column} = "
            f"COALESCE(LEAST(tenant_releases.{column}, $3), $3)",
            tenant, data.version, at,
        )


async def read(db: Any, tenant_id: str) -> list[dict[str, Any]]:
    """Every built release of the tenant, newest first."""
    rows = await db.fetch(f"SELECT {', '.join(COLUMNS)} FROM tenant_releases WHERE tenant_id = $1 "
                          "AND sha256 IS NOT NULL ORDER BY version DESC", tenant_id)
    return [dict(r) for r in rows]


def schema_version(releases: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The release whose data model the database has now: the newest migrated one that is
    not a rollback (a rollback applies no DDL)."""
    return next((r for r in releases if r["migrated_at"] and r["rollback_of"] is None), None)


def view(row: dict[str, Any], *, live: int | None, retained: set[int] | None) -> dict[str, Any]:
    out = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}
    out["live"] = row["version"] == live
    out["retained"] = None if retained is None else row["version"] in retained
    return out
