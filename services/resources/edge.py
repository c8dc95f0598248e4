"""What the edge serves for a tenant: a read of Caddy's admin API through router-config's
adapter (its reads only; router-config stays the one writer).

The route is router-config's: it removes it on the same TenantDeletionRequested. The
deprovisioner only reads, so traffic stops before the runtime and database go (a
request then meets the edge's 404, never a half-torn-down app).
"""

from __future__ import annotations

import httpx

from contracts.tenant import TenantNames
from services.router_config.caddy import CaddyEdge


class EdgeRoutes:
    def __init__(self, admin_url: str) -> None:
        self.caddy = CaddyEdge(admin_url, base_config={})

    async def serves(self, names: TenantNames) -> bool:
        """Whether Caddy still holds the tenant's route. An edge that cannot be reached
        serves nothing; router-config re-syncs it from desired state (tombstone included)."""
        try:
            return await self.caddy.route(names.route_id) is not None
        except httpx.TransportError:
            return False

    async def aclose(self) -> None:
        await self.caddy.aclose()
