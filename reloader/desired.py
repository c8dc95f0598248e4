"""Desired runtime services: what the provisioner asks the runtime fleet to run.

The local runtime agent reads this table and converges to it (one reloader per running
tenant); on AWS the provisioner creates an ECS service instead. `env_ref` names where
the tenant's environment lives (a secret name or ARN, or `file:<path>` locally), never
the values. Registering is convergent: the same call twice changes nothing, so it does
not restart the tenant's runtime (only a real change bumps `updated_at`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from contracts.tenant import validate_tenant_id

_SCHEMA_LOCK = 0x72756E74  # "runt": serialises concurrent ensure_schema calls
DEFAULT_MEMORY_MB = 512

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS runtime_services (
    tenant_id     text        PRIMARY KEY,
    desired_state text        NOT NULL DEFAULT 'running' CHECK (desired_state IN ('running', 'stopped')),
    env_ref       text,
    memory_mb     integer     NOT NULL DEFAULT 512 CHECK (memory_mb BETWEEN 32 AND 65536),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
"""


@dataclass(frozen=True)
class DesiredService:
    tenant_id: str
    desired_state: str
    env_ref: str | None
    memory_mb: int
    updated_at: datetime

    @property
    def fingerprint(self) -> str:
        """Changes exactly when the runtime must be replaced (new credentials, new limit)."""
        return f"{self.env_ref or ''}|{self.memory_mb}|{self.updated_at.isoformat()}"


async def ensure_schema(conn) -> None:
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
        await conn.execute(SCHEMA_SQL)


async def register_service(conn, tenant_id: str, env_ref: str | None, memory_mb: int = DEFAULT_MEMORY_MB) -> None:
    """Ask for the tenant's runtime to run with this environment and memory limit."""
    await conn.execute(
        """
        INSERT INTO runtime_services (tenant_id, desired_state, env_ref, memory_mb)
        VALUES ($1, 'running', $2, $3)
        ON CONFLICT (tenant_id) DO UPDATE
           SET desired_state = 'running', env_ref = EXCLUDED.env_ref, memory_mb = EXCLUDED.memory_mb,
               updated_at = now()
         WHERE (runtime_services.desired_state, runtime_services.env_ref, runtime_services.memory_mb)
               IS DISTINCT FROM ('running', EXCLUDED.env_ref, EXCLUDED.memory_mb)
        """,
        validate_tenant_id(tenant_id), env_ref, int(memory_mb),
    )


async def set_desired_state(conn, tenant_id: str, desired_state: str) -> None:
    """Stop (or start again) a runtime without forgetting it."""
    await conn.execute(
        "UPDATE runtime_services SET desired_state = $2, updated_at = now() "
        "WHERE tenant_id = $1 AND desired_state <> $2", tenant_id, desired_state)


async def deregister_service(conn, tenant_id: str) -> None:
    """The tenant is gone: its runtime is stopped and forgotten. Safe to repeat."""
    await conn.execute("DELETE FROM runtime_services WHERE tenant_id = $1", tenant_id)


async def desired_services(conn) -> list[DesiredService]:
    rows = await conn.fetch(
        "SELECT tenant_id, desired_state, env_ref, memory_mb, updated_at FROM runtime_services ORDER BY tenant_id")
    return [DesiredService(**dict(r)) for r in rows]
