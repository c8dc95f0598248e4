"""Router-config: the one writer of every tenant's route (the `routes` table), whatever
makes a host reach a tenant: the route resolver locally (adapters.TableRouter), the
tenant's stack on AWS (aws.StackRouterDeps). Pure stage logic; the I/O is the deps'.

TenantProvisioned → route `<tenant>.<base>` (+ custom domain), emit RouteConfigured.
DomainChangeRequested → the same with the new domain. TenantDeletionRequested → traffic
stops first (`unroute`), then the row becomes a tombstone, RouteRemoved. A host another
live tenant routes is a permanent failure (store.HostTaken): the consumer publishes
RouteFailed and the route stays as it was.

Convergent: the same event twice changes nothing the second time. Events older than the
tenant's deletion are ignored (store.py), and so is a deletion older than the live route's
`domain_at` (set at a re-creation to the previous deletion's time, and by each domain
change): that deletion belongs to an earlier incarnation, and replaying it must not take
the re-created tenant offline. (The consumer also skips any event of another incarnation
than the tenant's current one before this handler runs: events.recorded.)
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

import structlog

from contracts.envelope import Envelope, Event
from contracts.events_v1 import DomainChangeRequested, RouteRemoved, TenantDeletionRequested, TenantProvisioned
from contracts.tenant import TenantNames
from services.router_config.routes import Route
from services.router_config.store import RouteRow, RouteStore

log = structlog.get_logger(__name__)


class Router(Protocol):
    """What the handlers need: the table, the naming, and the edge's two operations."""

    store: RouteStore

    def names(self, tenant_id: str) -> TenantNames: ...

    async def configure(self, tenant: str, domain: str | None, domain_at: datetime | None) -> list[Event]:
        """Route the tenant's hosts (checked against every other live tenant's); RouteConfigured."""

    async def unroute(self, names: TenantNames) -> None:
        """Stop the tenant's traffic (safe to repeat); its tombstone is written next."""


async def _stale(row: RouteRow | None, at: datetime) -> bool:
    return row is not None and row.deleted_at is not None and at <= row.deleted_at


async def on_tenant_provisioned(envelope: Envelope[TenantProvisioned], deps: Router) -> list[Event]:
    tenant = envelope.tenant_id
    row = await deps.store.get(tenant)
    if await _stale(row, envelope.occurred_at):
        log.warning("route.stale_event", reason="the tenant was deleted after this event")
        return []
    if row is not None and row.live:  # a domain change may have come since: keep it
        return await deps.configure(tenant, row.custom_domain, row.domain_at)
    return await deps.configure(tenant, envelope.data.custom_domain, row.deleted_at if row else None)


async def on_domain_change_requested(envelope: Envelope[DomainChangeRequested], deps: Router) -> list[Event]:
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
                                       deps: Router) -> list[Event]:
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
