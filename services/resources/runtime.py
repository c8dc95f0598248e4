"""The tenant's runtime service as desired state in the runtime registry
(services.resources.registry: table `runtime_services` in the control database); the
local runtime agent, or ECS on AWS, converges to it. The registration names the
tenant's secret (`env_ref`), never values.

Writes commit at once (own connection), not with the handling transaction: a
deregistration must reach the runtime agent before the tenant's database is dropped.
"""

from __future__ import annotations

from typing import Any

from contracts.tenant import TenantNames
from services.resources import registry
from services.resources.base import NO_OPTIONS, Ensured, Outcome, PermanentError, TenantOptions, ref


class RuntimeRegistry:
    """Registers a tenant's runtime in the desired-state table the runtime agent reads."""

    def __init__(self, pool: Any, memory_mb: int = registry.DEFAULT_MEMORY_MB) -> None:
        self.pool = pool
        self.memory_mb = memory_mb

    async def ensure_schema(self) -> None:
        async with self.pool.acquire() as conn:
            await registry.ensure_schema(conn)

    async def register(self, names: TenantNames, env_ref: str, options: TenantOptions = NO_OPTIONS) -> Ensured[str]:
        async with self.pool.acquire() as conn:
            before = await self._service(conn, names.tenant_id)
            await registry.register_service(conn, names.tenant_id, env_ref, self.memory_mb,
                                            idle_after_s=options.idle_after_s)
            after = await self._service(conn, names.tenant_id)
        changed = before is not None and before.fingerprint != after.fingerprint
        return Ensured(Outcome.of(before is None, changed), names.runtime_service)

    async def set_idle_after(self, names: TenantNames, idle_after_s: int | None) -> Ensured[str]:
        """Change the registered runtime's idle period (None: the platform's default; 0: always
        on). Not a replacement: the agent applies it to the running (or sleeping) runtime."""
        async with self.pool.acquire() as conn:
            before = await self._service(conn, names.tenant_id)
            if before is None:
                raise PermanentError(f"tenant {names.tenant_id!r} has no registered runtime: it was deleted, or its "
                                     "provisioning never finished")
            await registry.set_idle_after(conn, names.tenant_id, idle_after_s)
        return Ensured(Outcome.of(False, before.idle_after_s != idle_after_s), names.runtime_service)

    async def deregister(self, names: TenantNames) -> list[str]:
        async with self.pool.acquire() as conn:
            existed = await self._service(conn, names.tenant_id) is not None
            await registry.deregister_service(conn, names.tenant_id)
        return [ref("runtime", names.runtime_service)] if existed else []

    async def existing(self, names: TenantNames) -> list[str]:
        return [ref("runtime", names.runtime_service)] if names.tenant_id in await self.registered() else []

    async def registered(self) -> set[str]:
        """Tenant ids with a registered runtime service."""
        async with self.pool.acquire() as conn:
            return {s.tenant_id for s in await registry.desired_services(conn)}

    @staticmethod
    async def _service(conn: Any, tenant_id: str) -> registry.DesiredService | None:
        return next((s for s in await registry.desired_services(conn) if s.tenant_id == tenant_id), None)
