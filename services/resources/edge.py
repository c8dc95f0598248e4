"""What the edge still serves for a tenant: asked of the route resolver, the edge's own
source of truth (services.router_config.resolver), the same way Caddy asks it.

The route is router-config's: it removes it on the same TenantDeletionRequested. The
deprovisioner only reads, so traffic stops before the runtime and database go (a request
then meets the edge's 404, never a half-torn-down app). Caddy may use an answer it already
had for up to `contracts.edge.REFRESH_S`, so a tenant counts as served until that long after the
resolver first stopped answering for it.
"""

from __future__ import annotations

import time

import dns.asyncquery
import dns.message
import dns.rcode
import dns.rdatatype
import dns.exception

from contracts.tenant import TenantNames
from contracts.edge import REFRESH_S, app_name


class EdgeRoutes:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._gone_at: dict[str, float] = {}

    async def answered(self, names: TenantNames) -> bool:
        """Whether the resolver answers the tenant's own host. A resolver that cannot be
        reached answers nothing (the edge then serves nobody, this tenant included)."""
        query = dns.message.make_query(app_name(names.host), dns.rdatatype.SRV)
        try:
            reply = await dns.asyncquery.tcp(query, self.host, port=self.port, timeout=3)
        except (OSError, dns.exception.DNSException):
            return False
        return reply.rcode() == dns.rcode.NOERROR and bool(reply.answer)

    async def serves(self, names: TenantNames) -> bool:
        if await self.answered(names):
            self._gone_at.pop(names.tenant_id, None)
            return True
        gone_at = self._gone_at.setdefault(names.tenant_id, time.monotonic())
        return time.monotonic() - gone_at < REFRESH_S + 0.25  # Caddy's cached answer, and a margin

    async def aclose(self) -> None:
        """Nothing held open: one connection per question."""
