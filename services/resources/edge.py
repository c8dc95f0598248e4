"""What the edge serves for a tenant, read from Caddy's admin API (read only).

The route is router-config's: it removes it on the same TenantDeletionRequested. The
deprovisioner only reads, so traffic stops before the runtime and database go (a
request then meets the edge's 404, never a half-torn-down app).
"""

from __future__ import annotations

import httpx

from contracts.tenant import TenantNames


class EdgeRoutes:
    def __init__(self, admin_url: str, timeout: float = 5.0) -> None:
        self.admin_url, self.timeout = admin_url.rstrip("/"), timeout

    async def serves(self, names: TenantNames) -> bool:
        """Whether Caddy still holds the tenant's route. An edge that cannot be reached
        serves nothing; router-config re-syncs it from desired state (tombstone included)."""
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                resp = await client.get(f"{self.admin_url}/id/{names.route_id}")
        except httpx.TransportError:
            return False
        return resp.status_code == 200
