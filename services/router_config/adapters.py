"""Router-config's local edge: a route is a row of the `routes` table, which the route
resolver answers the edge's lookups from (resolver.py; it hears every write through
`NOTIFY`). Nothing is written to Caddy: its configuration is fixed at `up` (lookup.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import structlog

from contracts.envelope import Event
from contracts.events_v1 import RouteConfigured
from contracts.tenant import TenantNames, tenant_names
from core.metrics import set_edge_routes
from services.router_config.routes import Route
from services.router_config.store import RouteStore

log = structlog.get_logger(__name__)


class RuntimeNotRegistered(RuntimeError):
    """The tenant has no runtime port yet (transient: the provisioner registers it)."""


@dataclass
class TableRouter:
    store: RouteStore
    prefix: str = "hostplane"
    runtime_host: str = "127.0.0.1"

    def names(self, tenant_id: str) -> TenantNames:
        return tenant_names(tenant_id, prefix=self.prefix)

    async def configure(self, tenant: str, domain: str | None, domain_at: datetime | None) -> list[Event]:
        names = self.names(tenant)
        port = await self.store.app_port(tenant)
        if port is None:
            raise RuntimeNotRegistered(f"tenant {tenant} has no registered runtime port yet")
        hosts = (names.host, domain) if domain else (names.host,)
        await self.store.check_hosts(tenant, hosts)
        route = Route(tenant, names.route_id, hosts, f"{self.runtime_host}:{port}", names.bucket)
        changed = await self.store.save(route, domain, domain_at)
        set_edge_routes(await self.store.live_count())
        log.info("route.configured", route_id=route.route_id, hosts=list(hosts), upstream=route.upstream,
                 changed=changed)
        return [RouteConfigured(hosts=list(hosts), route_id=route.route_id, upstream=route.upstream)]

    async def unroute(self, names: TenantNames) -> None:
        """The tombstone the handler writes next is what stops the traffic here: the resolver
        stops answering the tenant's names, and the edge follows within contracts.edge.REFRESH_S."""
        set_edge_routes(await self.store.live_count(leaving=names.tenant_id))
        log.info("route.unrouted", route_id=names.route_id)

    async def aclose(self) -> None:
        """The pool is the service's (service.py closes it)."""
