"""Router-config on AWS (HOSTPLANE_TARGET=aws): a tenant's route is its stack's edge.

The shared Caddy there is static (X-Tenant-Id → the tenant's Cloud Map SRV name) and has
no admin API; what makes a host reach a tenant is in the tenant's stack: the Route 53
record, the pooled KeyValueStore entry or the dedicated distribution, the custom domain's
certificate. Router-config stays the one writer of routes by owning the stack's route
keys (`TenantStacks.route`): it routes a provisioned tenant, changes its domain, and
stops its traffic first on deletion. The `routes` table, the ordering guards against
late events and the one-host-one-tenant rule are the same as locally (handlers.py).

A custom domain's certificate (ACM, us-east-1, DNS-validated by records the domain's owner
adds: stack output `certificateValidation`) is issued minutes to days after it is asked
for; the domain is attached to the edge only once it is (`domain_ready`). A loop every
PENDING_EVERY_S looks at the routes whose domain is still unattached and routes again
those whose certificate was issued, announcing the domain with RouteConfigured.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import structlog
from botocore.exceptions import ClientError

from contracts.envelope import Envelope, Event
from contracts.events_v1 import DnsRecord, RouteConfigured
from contracts.tenant import TenantNames, tenant_names
from events.outbox import add_to_outbox
from core.aws import aws_client
from core.metrics import set_edge_routes
from core.settings import Settings
from services.resources.aws.stacks import TenantStacks
from services.router_config.routes import Route
from services.router_config.store import RouteStore

log = structlog.get_logger(__name__)


PENDING_EVERY_S = 300.0
CERTIFICATE_REGION = "us-east-1"  # CloudFront takes viewer certificates from there only


class StackNotProvisioned(RuntimeError):
    """The tenant has no stack yet (transient: the provisioner creates it)."""


class Certificates(Protocol):
    async def issued(self, arn: str) -> bool: ...


class AcmCertificates:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings.model_copy(update={"region": CERTIFICATE_REGION})

    async def issued(self, arn: str) -> bool:
        async with aws_client("acm", self.settings) as acm:
            try:
                found = await acm.describe_certificate(CertificateArn=arn)
            except ClientError as exc:  # gone, or not ours: not attachable
                log.warning("route.certificate_unreadable", code=exc.response.get("Error", {}).get("Code"))
                return False
        return found["Certificate"]["Status"] == "ISSUED"


def dns_records(domain: str | None, outputs: dict[str, Any], pending: str | None) -> list[DnsRecord]:
    """What the domain's owner publishes: while pending, the certificate's validation
    records; always, the domain's CNAME to the tenant's edge (an apex domain needs its DNS
    provider's CNAME flattening or ALIAS instead)."""
    if not domain:
        return []
    validation = [DnsRecord(**r) for r in outputs.get("certificateValidation") or []] if pending else []
    edge = outputs.get("edgeDomain")
    return validation + ([DnsRecord(name=domain, type="CNAME", value=edge)] if edge else [])


@dataclass
class StackRouterDeps:
    store: RouteStore
    stacks: TenantStacks
    prefix: str
    base_domain: str
    certificates: Certificates | None = None
    own_pool: Any = None  # the service's pool, closed with it
    task: asyncio.Task | None = None  # the pending-domain loop

    def names(self, tenant_id: str) -> TenantNames:
        return tenant_names(tenant_id, prefix=self.prefix, base_domain=self.base_domain)

    async def configure(self, tenant: str, domain: str | None, domain_at: datetime | None) -> list[Event]:
        names = self.names(tenant)
        hosts = (names.host, domain) if domain else (names.host,)
        await self.store.check_hosts(tenant, hosts)
        ready = await self._domain_ready(names, domain)
        result = await self.stacks.route(names, custom_domain=domain, routed=True, domain_ready=ready)
        if result is None:  # nothing changed anywhere; the redelivery finds the stack
            raise StackNotProvisioned(f"tenant {tenant} has no stack yet")
        # Caddy resolves the tenant's Cloud Map service by this name (infra/platform/caddy.py).
        route = Route(tenant, names.route_id, hosts, names.runtime_service, names.bucket)
        await self.store.save(route, domain, domain_at)
        served = [h for h in result.outputs.get("routedHosts") or [] if h in hosts] or [names.host]
        pending = domain if domain and domain not in served else None
        if pending:
            # Attached by attach_pending once the owner published the validation records.
            log.warning("route.domain_pending", domain=domain, reason="certificate not validated yet")
        await self._count_routes()
        log.info("route.configured", route_id=route.route_id, hosts=served, upstream=route.upstream)
        return [RouteConfigured(hosts=served, route_id=route.route_id, upstream=route.upstream,
                                pending_domain=pending, dns_records=dns_records(domain, result.outputs, pending))]

    async def _count_routes(self, leaving: str | None = None) -> None:
        """hostplane_edge_routes: the live routes (each one's stack `up` just succeeded or
        did before); `leaving`: unrouted, its tombstone not written yet."""
        set_edge_routes(await self.store.live_count(leaving=leaving))

    async def _domain_ready(self, names: TenantNames, domain: str | None,
                            outputs: dict[str, Any] | None = None) -> bool:
        """Whether the certificate the stack requested for `domain` was issued (`outputs`:
        the stack's, when the caller read them already: each read is a CLI run)."""
        if not domain or self.certificates is None:
            return False
        if outputs is None:
            outputs = await self.stacks.outputs(names) or {}
        if outputs.get("customDomain") != domain:
            return False  # a new domain: its certificate is requested by the coming `up`
        if outputs.get("customDomainReady"):
            return True
        arn = outputs.get("certificateArn")
        return bool(arn) and await self.certificates.issued(arn)

    async def attach_pending(self) -> int:
        """Route again each live route whose domain is not attached yet but whose certificate
        was issued; its RouteConfigured goes out through the outbox. Returns how many."""
        attached = 0
        for route in await self.store.live_routes():
            row = await self.store.get(route.tenant_id)
            if row is None or not row.live or not row.custom_domain:
                continue
            outputs = await self.stacks.outputs(self.names(route.tenant_id)) or {}
            if row.custom_domain in (outputs.get("routedHosts") or []):
                continue
            if not await self._domain_ready(self.names(route.tenant_id), row.custom_domain, outputs):
                continue
            events = await self.configure(route.tenant_id, row.custom_domain, row.domain_at)
            async with self.store.pool.acquire() as conn:
                await add_to_outbox(conn, [Envelope.new(e, tenant_id=route.tenant_id, producer="router-config")
                                           for e in events])
            attached += 1
        return attached

    def start_pending_loop(self, every: float = PENDING_EVERY_S) -> None:
        async def loop() -> None:
            while True:
                await asyncio.sleep(every)
                try:
                    await self.attach_pending()
                except Exception as exc:  # a stack or ACM away: the next round tries again
                    log.warning("route.pending_failed", error=type(exc).__name__)

        self.task = asyncio.create_task(loop())

    async def unroute(self, names: TenantNames) -> None:
        """No record, no KeyValueStore entry, distribution disabled; a tenant without a
        stack (never provisioned, or destroyed already) serves nothing."""
        result = await self.stacks.route(names, custom_domain=None, routed=False)
        await self._count_routes(leaving=names.tenant_id)
        log.info("route.unrouted", route_id=names.route_id, had_stack=result is not None)

    async def aclose(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        self.stacks.close()
        if self.own_pool is not None:
            await self.own_pool.close()
