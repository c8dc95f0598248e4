"""Router-config on AWS (HOSTPLANE_TARGET=aws): a tenant's route is its stack's edge.

The shared Caddy there is static (X-Tenant-Id → the tenant's Cloud Map SRV name) and has
no admin API; what makes a host reach a tenant is in the tenant's stack: the Route 53
record, the pooled KeyValueStore entry or the dedicated distribution, the custom domain's
certificate. Router-config stays the one writer of routes by owning the stack's route
keys (`TenantStacks.route`): it routes a provisioned tenant, changes its domain, and
stops its traffic first on deletion. The `routes` table, the ordering guards against
late events and the one-host-one-tenant rule are the same as locally (handlers.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from contracts.envelope import Event
from contracts.events_v1 import RouteConfigured
from contracts.tenant import TenantNames, tenant_names
from services.resources.aws.stacks import TenantStacks
from services.router_config.handlers import HostTaken
from services.router_config.routes import Route
from services.router_config.store import RouteStore

log = structlog.get_logger(__name__)


class StackNotProvisioned(RuntimeError):
    """The tenant has no stack yet (transient: the provisioner creates it)."""


@dataclass
class StackRouterDeps:
    store: RouteStore
    stacks: TenantStacks
    prefix: str
    base_domain: str
    own_pool: Any = None  # the service's pool, closed with it

    def names(self, tenant_id: str) -> TenantNames:
        return tenant_names(tenant_id, prefix=self.prefix, base_domain=self.base_domain)

    async def configure(self, tenant: str, domain: str | None, domain_at: datetime | None) -> list[Event]:
        names = self.names(tenant)
        hosts = (names.host, domain) if domain else (names.host,)
        for host in hosts:
            if owner := await self.store.host_owner(host, tenant):
                raise HostTaken(f"host {host} is already routed to tenant {owner}")
        result = await self.stacks.route(names, custom_domain=domain, routed=True)
        if result is None:  # nothing changed anywhere; the redelivery finds the stack
            raise StackNotProvisioned(f"tenant {tenant} has no stack yet")
        # Caddy resolves the tenant's Cloud Map service by this name (infra/platform/caddy.py).
        route = Route(tenant, names.route_id, hosts, names.runtime_service, names.bucket)
        await self.store.save(route, domain, domain_at)
        served = [h for h in result.outputs.get("routedHosts") or [] if h in hosts] or [names.host]
        if domain and domain not in served:
            # The certificate waits for its DNS validation records (stack output
            # certificateValidation); the domain is attached by the next route once valid.
            log.warning("route.domain_pending", domain=domain, reason="certificate not validated yet")
        log.info("route.configured", route_id=route.route_id, hosts=served, upstream=route.upstream)
        return [RouteConfigured(hosts=served, route_id=route.route_id, upstream=route.upstream)]

    async def unroute(self, names: TenantNames) -> None:
        """No record, no KeyValueStore entry, distribution disabled; a tenant without a
        stack (never provisioned, or destroyed already) serves nothing."""
        result = await self.stacks.route(names, custom_domain=None, routed=False)
        log.info("route.unrouted", route_id=names.route_id, had_stack=result is not None)

    async def aclose(self) -> None:
        self.stacks.close()
        if self.own_pool is not None:
            await self.own_pool.close()
