"""The runtime registry (table `runtime_services` in the control database): which tenant
runtimes should run, and with what. Its SQL lives here alone.

The provisioner writes it through `services.resources.runtime.RuntimeRegistry`;
router-config reads the tenants' app ports; the local runtime agent
(`hostplane.local.agent`) reads it and converges to it (one reloader per running
tenant); on AWS the provisioner creates an ECS service instead. `env_ref` names where
the tenant's environment lives (a secret name or ARN, or `file:<path>` locally), never
the values. Registering is convergent: the same call twice changes nothing, so it does
not restart the tenant's runtime (only a real change bumps `updated_at`).

`app_port` is the tenant's address in this registry (the local stand-in for Cloud Map's
SRV record): router-config points the edge at it and the agent serves the tenant on it.
It is allocated once, at registration, as the lowest port of the configured range
(settings `runtime_port_base`/`runtime_port_count`) that no row holds and nothing
listens on; a transaction-level advisory lock serialises allocations.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from contracts.tenant import validate_tenant_id
from core.process import port_open

_SCHEMA_LOCK = 0x72756E74  # "runt": serialises concurrent ensure_schema calls
_PORT_LOCK = 0x706F7274  # "port": serialises app port allocation
# NOTIFY channel: a tenant's current.json just moved (payload: the tenant id). The migrator
# sends it; the local runtime agent pokes that tenant's reloader, which reads the pointer at
# once instead of at its next poll (on AWS nothing listens: the poll of EFS remains).
POINTER_CHANNEL = "hostplane_pointer"
DEFAULT_MEMORY_MB = 512

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS runtime_services (
    tenant_id     text        PRIMARY KEY,
    desired_state text        NOT NULL DEFAULT 'running' CHECK (desired_state IN ('running', 'stopped')),
    env_ref       text,
    memory_mb     integer     NOT NULL DEFAULT 512 CHECK (memory_mb BETWEEN 32 AND 65536),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE runtime_services ADD COLUMN IF NOT EXISTS app_port integer UNIQUE;
ALTER TABLE runtime_services ADD COLUMN IF NOT EXISTS idle_after_s integer CHECK (idle_after_s >= 0);
"""


class NoFreePort(RuntimeError):
    """Every port of the runtime range is taken (raise the count or move the base)."""


@dataclass(frozen=True)
class DesiredService:
    tenant_id: str
    desired_state: str
    env_ref: str | None
    memory_mb: int
    updated_at: datetime
    app_port: int | None = None
    idle_after_s: int | None = None  # scale to zero after this long without a request; None: the
    # platform's default (settings.scale_to_zero_after); 0: always on

    @property
    def fingerprint(self) -> str:
        """Changes exactly when the runtime must be replaced (new credentials, limit or port;
        not the idle period, which the agent applies to the running runtime)."""
        return f"{self.env_ref or ''}|{self.memory_mb}|{self.app_port or ''}|{self.updated_at.isoformat()}"


def port_range(settings=None) -> range:
    """The tenant app ports a platform allocates from (`settings`: this process's by default)."""
    if settings is None:
        from core.settings import get_settings

        settings = get_settings()
    return range(settings.runtime_port_base, settings.runtime_port_base + settings.runtime_port_count)


async def ensure_schema(conn) -> None:
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
        await conn.execute(SCHEMA_SQL)


async def pointer_moved(conn, tenant_id: str) -> None:
    await conn.execute("SELECT pg_notify($1, $2)", POINTER_CHANNEL, validate_tenant_id(tenant_id))


async def register_service(conn, tenant_id: str, env_ref: str | None, memory_mb: int = DEFAULT_MEMORY_MB,
                           *, ports: range | None = None, host: str = "127.0.0.1",
                           idle_after_s: int | None = None) -> int:
    """Ask for the tenant's runtime to run with this environment, memory limit and idle
    period; returns its app port (allocated on the first registration, kept afterwards)."""
    async with conn.transaction():
        await _upsert(conn, tenant_id, env_ref, memory_mb)
        await set_idle_after(conn, tenant_id, idle_after_s)
        port = await conn.fetchval("SELECT app_port FROM runtime_services WHERE tenant_id = $1", tenant_id)
        if port is None:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _PORT_LOCK)
            taken = {r["app_port"] for r in await conn.fetch(
                "SELECT app_port FROM runtime_services WHERE app_port IS NOT NULL")}
            port = next((p for p in (ports or port_range()) if p not in taken and not port_open(host, p, 0.05)),
                        None)
            if port is None:
                raise NoFreePort(f"no free runtime port in {ports or port_range()}")
            await conn.execute("UPDATE runtime_services SET app_port = $2, updated_at = now() WHERE tenant_id = $1",
                               tenant_id, port)
    return port


async def _upsert(conn, tenant_id: str, env_ref: str | None, memory_mb: int) -> None:
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


async def set_idle_after(conn, tenant_id: str, idle_after_s: int | None) -> None:
    """The tenant's idle period (None: the platform's default; 0: always on). Not a
    replacement of its runtime: `updated_at` stays."""
    if idle_after_s is not None and idle_after_s < 0:
        raise ValueError("idle_after_s must be 0 (always on) or more")
    await conn.execute("UPDATE runtime_services SET idle_after_s = $2 WHERE tenant_id = $1 "
                       "AND idle_after_s IS DISTINCT FROM $2", tenant_id, idle_after_s)


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
        "SELECT tenant_id, desired_state, env_ref, memory_mb, updated_at, app_port, idle_after_s "
        "FROM runtime_services "
        "ORDER BY tenant_id")
    return [DesiredService(**dict(r)) for r in rows]


async def app_port(conn, tenant_id: str) -> int | None:
    """The tenant's registered app port (None: not registered yet)."""
    return await conn.fetchval("SELECT app_port FROM runtime_services WHERE tenant_id = $1", tenant_id)
