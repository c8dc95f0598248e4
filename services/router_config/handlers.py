"""Router-config: the edge routes of every tenant, by `@id`, in one writer.

TenantProvisioned → route `<tenant>.localhost` (+ custom domain) to the tenant's runtime
port from the runtime registry (not registered yet: a transient error, the consumer
retries), record it in `routes`, write it to Caddy, emit RouteConfigured.
DomainChangeRequested → the same with the new domain. TenantDeletionRequested → the route
leaves Caddy first (traffic stops), then the row becomes a tombstone, RouteRemoved.

Convergent: desired state is written first and Caddy is only written when its route
differs, so the same event twice changes nothing the second time. Events older than the
tenant's deletion are ignored (store.py), and so is a deletion older than the live route's
`domain_at` (set at a re-creation to the previous deletion's time, and by each domain
change): that deletion belongs to an earlier incarnation, and replaying it must not take
the re-created tenant offline. (The consumer also skips any event of another incarnation
than the tenant's current one before this handler runs: events.recorded.) If Caddy lost the edge server or its
catch-all, the whole route list is reloaded from the table (`resync`), which the service
also does at start and periodically (main.py). Every write and resync sets the
`hostplane_edge_routes` gauge from the tenant routes Caddy holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import structlog

from contracts.envelope import Envelope, Event
from contracts.events_v1 import DomainChangeRequested, RouteConfigured, RouteRemoved, TenantDeletionRequested, \
    TenantProvisioned
from contracts.tenant import TenantNames, tenant_names
from core.metrics import set_edge_routes
from services.router_config.caddy import CaddyEdge, EdgeDrifted
from services.router_config.routes import Route, caddy_route, desired_routes, drifted, is_tenant_route
from services.router_config.store import RouteRow, RouteStore

log = structlog.get_logger(__name__)


class RuntimeNotRegistered(RuntimeError):
    """The tenant has no runtime port yet (transient: the provisioner registers it)."""


class HostTaken(RuntimeError):
    """Another live tenant already routes this host; never route one host to two tenants."""


@dataclass
class RouterDeps:
    store: RouteStore
    edge: CaddyEdge
    origin: str | None  # host:port serving buckets path-style (the emulator), None: no /static/
    prefix: str = "hostplane"
    runtime_host: str = "127.0.0.1"

    def names(self, tenant_id: str) -> TenantNames:
        return tenant_names(tenant_id, prefix=self.prefix)

    async def configure(self, tenant: str, domain: str | None, domain_at: datetime | None) -> list[Event]:
        return await _configure(self, tenant, domain, domain_at)

    async def unroute(self, names: TenantNames) -> None:
        """Traffic stops: the route leaves Caddy (whatever Caddy holds, not this tenant's)."""
        try:
            removed = await self.edge.delete(names.route_id)
        except EdgeDrifted:
            removed = False
        if not removed:
            await resync(self, without=names.tenant_id)
        await _report_edge(self)
        log.info("route.unrouted", route_id=names.route_id, caddy_write=removed)

    async def aclose(self) -> None:
        await self.edge.aclose()


async def resync(deps: RouterDeps, *, without: str | None = None) -> bool:
    """Reload every route from the table when Caddy's differ; True when it had to.
    `without`: a tenant whose route is leaving (its tombstone is not written yet)."""
    routes = [r for r in await deps.store.live_routes() if r.tenant_id != without]
    live = await deps.edge.routes()
    wanted = [caddy_route(r, deps.origin) for r in routes]
    if not drifted(live, wanted):
        _count_edge_routes(live)
        return False
    await deps.edge.load(desired_routes(routes, deps.origin, live))
    set_edge_routes(len(wanted))
    log.warning("edge.resynced", routes=len(routes), had=len([r for r in live or [] if is_tenant_route(r)]))
    return True


def _count_edge_routes(live: list[dict] | None) -> None:
    set_edge_routes(sum(1 for r in live or [] if is_tenant_route(r)))


async def _report_edge(deps: RouterDeps) -> None:
    """The edge route gauge from what Caddy holds now (after a per-route write)."""
    try:
        _count_edge_routes(await deps.edge.routes())
    except Exception as exc:  # a metric never fails the event; the next resync sets it
        log.warning("edge.count_failed", error=type(exc).__name__)


async def _stale(row: RouteRow | None, at: datetime) -> bool:
    return row is not None and row.deleted_at is not None and at <= row.deleted_at


async def _configure(deps: RouterDeps, tenant: str, domain: str | None, domain_at: datetime | None) -> list[Event]:
    names = deps.names(tenant)
    port = await deps.store.app_port(tenant)
    if port is None:
        raise RuntimeNotRegistered(f"tenant {tenant} has no registered runtime port yet")
    hosts = (names.host, domain) if domain else (names.host,)
    for host in hosts:
        if owner := await deps.store.host_owner(host, tenant):
            raise HostTaken(f"host {host} is already routed to tenant {owner}")
    route = Route(tenant, names.route_id, hosts, f"{deps.runtime_host}:{port}", names.bucket)
    await deps.store.save(route, domain, domain_at)
    try:
        wrote = await deps.edge.put(caddy_route(route, deps.origin))
    except EdgeDrifted as exc:
        log.warning("edge.drifted", error=str(exc))
        wrote = await resync(deps)
    await _report_edge(deps)
    log.info("route.configured", route_id=route.route_id, hosts=list(hosts), upstream=route.upstream,
             caddy_write=wrote)
    return [RouteConfigured(hosts=list(hosts), route_id=route.route_id, upstream=route.upstream)]


async def on_tenant_provisioned(envelope: Envelope[TenantProvisioned], deps: RouterDeps) -> list[Event]:
    tenant = envelope.tenant_id
    row = await deps.store.get(tenant)
    if await _stale(row, envelope.occurred_at):
        log.warning("route.stale_event", reason="the tenant was deleted after this event")
        return []
    if row is not None and row.live:  # a domain change may have come since: keep it
        return await deps.configure(tenant, row.custom_domain, row.domain_at)
    return await deps.configure(tenant, envelope.data.custom_domain, row.deleted_at if row else None)


async def on_domain_change_requested(envelope: Envelope[DomainChangeRequested], deps: RouterDeps) -> list[Event]:
    tenant = envelope.tenant_id
    row = await deps.store.get(tenant)
    if await _stale(row, envelope.occurred_at):
        log.warning("route.stale_event", reason="the tenant was deleted after this event")
        return []
    if row is not None and row.live and row.domain_at is not None and envelope.occurred_at < row.domain_at:
        log.warning("route.stale_domain", reason="a newer domain change was already applied")
        return await deps.configure(tenant, row.custom_domain, row.domain_at)
    return await deps.configure(tenant, envelope.data.custom_domain, envelope.occurred_at)


async def on_tenant_deletion_requested(envelope: Envelope[TenantDeletionRequested],
                                       deps: RouterDeps) -> list[Event]:
    tenant = envelope.tenant_id
    names = deps.names(tenant)
    row = await deps.store.get(tenant)
    if await _stale(row, envelope.occurred_at) and row.deleted_at != envelope.occurred_at:
        return []  # an older deletion than the one already applied
    if row is not None and row.live and row.domain_at is not None and envelope.occurred_at <= row.domain_at:
        log.warning("route.stale_event", reason="the tenant was created again (or its domain changed) "
                                                "after this deletion")
        return []
    hosts = row.route.hosts if row is not None else (names.host,)
    await deps.unroute(names)  # traffic stops before anything else (safe to repeat)
    await deps.store.tombstone(Route(tenant, names.route_id, hosts, "", names.bucket), envelope.occurred_at)
    log.info("route.removed", route_id=names.route_id)
    return [RouteRemoved(route_id=names.route_id, hosts=list(hosts))]


HANDLERS = {
    TenantProvisioned: on_tenant_provisioned,
    DomainChangeRequested: on_domain_change_requested,
    TenantDeletionRequested: on_tenant_deletion_requested,
}
