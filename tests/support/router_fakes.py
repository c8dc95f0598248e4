"""Router-config's route table as a dict (`FakeStore`: the host rule, tombstones, live rows)
and the envelopes its handlers take. Shared by the handler tests on the local router and
router-config's tests on the AWS target."""

from __future__ import annotations

from datetime import datetime

from contracts.envelope import Envelope
from contracts.events_v1 import DomainChangeRequested, TenantDeletionRequested, TenantProvisioned
from services.router_config.routes import Route
from services.router_config.store import HostTaken, RouteRow
from tests.support.events import sample


class FakeStore:
    """The route table: a row per tenant, `ports` the runtimes registered (local target)."""

    def __init__(self, ports: dict[str, int]) -> None:
        self.rows: dict[str, RouteRow] = {}
        self.ports = ports

    async def get(self, tenant_id: str) -> RouteRow | None:
        return self.rows.get(tenant_id)

    async def app_port(self, tenant_id: str) -> int | None:
        return self.ports.get(tenant_id)

    async def check_hosts(self, tenant_id: str, hosts: list[str]) -> None:
        for host in hosts:
            if owner := next((t for t, r in self.rows.items() if r.live and t != tenant_id and host in r.route.hosts),
                             None):
                raise HostTaken(f"host {host} is already routed to tenant {owner}", hosts)

    async def save(self, route: Route, custom_domain: str | None, domain_at: datetime | None) -> bool:
        row = RouteRow(route, custom_domain, domain_at, None)
        changed, self.rows[route.tenant_id] = self.rows.get(route.tenant_id) != row, row
        self.writes = getattr(self, "writes", 0) + changed
        return changed

    async def live_count(self, *, leaving: str | None = None) -> int:
        return sum(1 for t, r in self.rows.items() if r.live and t != leaving)

    async def tombstone(self, route: Route, at: datetime) -> None:
        row = self.rows.get(route.tenant_id)
        if row is None or row.deleted_at is None or row.deleted_at < at:
            base = row or RouteRow(route, None, None, None)
            self.rows[route.tenant_id] = RouteRow(base.route, base.custom_domain, base.domain_at, at)

    async def live_routes(self) -> list[Route]:
        return [r.route for r in self.rows.values() if r.live]


def provisioned(tenant: str = "acme", domain: str | None = None) -> Envelope:
    return Envelope.new(sample(TenantProvisioned).model_copy(update={"custom_domain": domain}), tenant_id=tenant,
                        producer="provisioner")


def domain_change(domain: str | None, tenant: str = "acme") -> Envelope:
    return Envelope.new(DomainChangeRequested(custom_domain=domain), tenant_id=tenant, producer="api")


def deletion(tenant: str = "acme") -> Envelope:
    return Envelope.new(TenantDeletionRequested(), tenant_id=tenant, producer="api")
