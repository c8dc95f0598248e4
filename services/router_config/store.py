"""The `routes` table: router-config's desired state, in the control database.

One row per tenant that ever had a route. A deletion leaves a tombstone (`deleted_at`),
so an event older than the deletion that arrives late (a redelivered TenantProvisioned,
a domain change) cannot bring the route back, while a re-created tenant (its events are
newer) gets it again. `domain_at` is when the custom domain was last set by a domain
change: TenantProvisioned carries the domain asked for at creation and only sets it on a
route that has none yet, so a replay never undoes a later change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from events.failure import PermanentFailure
from events.store import apply_schema
from services.resources import registry
from services.router_config.routes import Route

_SCHEMA_LOCK = 0x726F7574  # "rout"
NOTIFY_CHANNEL = "hostplane_routes"  # every change of a row; the route resolver listens

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS routes (
    tenant_id     text        PRIMARY KEY,
    route_id      text        NOT NULL UNIQUE,
    hosts         text[]      NOT NULL,
    custom_domain text,
    upstream      text        NOT NULL,
    bucket        text        NOT NULL,
    domain_at     timestamptz,
    deleted_at    timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
-- host → live route, as the one-host-one-tenant check asks it (flat in the number of routes)
CREATE INDEX IF NOT EXISTS routes_live_hosts ON routes USING gin (hosts) WHERE deleted_at IS NULL;
"""


@dataclass(frozen=True)
class RouteRow:
    route: Route
    custom_domain: str | None
    domain_at: datetime | None
    deleted_at: datetime | None

    @property
    def live(self) -> bool:
        return self.deleted_at is None


def _row(r: Any) -> RouteRow:
    route = Route(r["tenant_id"], r["route_id"], tuple(r["hosts"]), r["upstream"], r["bucket"])
    return RouteRow(route, r["custom_domain"], r["domain_at"], r["deleted_at"])


class HostTaken(PermanentFailure):
    """Another live tenant already routes this host; never route one host to two tenants.
    Redelivery cannot change that: RouteFailed (stage 'hosts') with the hosts asked for."""

    def __init__(self, error: str, hosts: tuple[str, ...] = ()) -> None:
        super().__init__("hosts", error, hosts=list(hosts))


class RouteStore:
    """`pool`: an asyncpg pool (or, for reads only, one connection)."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    async def ensure_schema(self) -> None:
        await apply_schema(self.pool, SCHEMA_SQL, _SCHEMA_LOCK)

    async def get(self, tenant_id: str) -> RouteRow | None:
        r = await self.pool.fetchrow("SELECT * FROM routes WHERE tenant_id = $1", tenant_id)
        return _row(r) if r else None

    async def live_routes(self) -> list[Route]:
        rows = await self.pool.fetch("SELECT * FROM routes WHERE deleted_at IS NULL ORDER BY route_id")
        return [_row(r).route for r in rows]

    async def app_port(self, tenant_id: str) -> int | None:
        """The tenant's port in the runtime registry (services.resources.registry); None: not registered."""
        async with self.pool.acquire() as conn:
            return await registry.app_port(conn, tenant_id)

    async def live_tenants(self) -> set[str]:
        return {r["tenant_id"] for r in await self.pool.fetch("SELECT tenant_id FROM routes WHERE deleted_at IS NULL")}

    async def live_count(self, *, leaving: str | None = None) -> int:
        """Live routes; `leaving`: a tenant whose tombstone is about to be written."""
        return await self.pool.fetchval(
            "SELECT count(*) FROM routes WHERE deleted_at IS NULL AND tenant_id IS DISTINCT FROM $1", leaving)

    async def check_hosts(self, tenant_id: str, hosts: tuple[str, ...]) -> None:
        """HostTaken when another live tenant already routes one of `hosts`."""
        taken = await self.pool.fetchrow(
            "SELECT tenant_id, hosts FROM routes WHERE deleted_at IS NULL AND hosts && $1::text[] "
            "AND tenant_id <> $2 LIMIT 1", list(hosts), tenant_id)
        if taken:
            host = next(h for h in hosts if h in taken["hosts"])
            raise HostTaken(f"host {host} is already routed to tenant {taken['tenant_id']}", hosts)

    async def _changed(self, status: str, tenant_id: str) -> bool:
        """Tell the route resolver (LISTEN hostplane_routes) when a write changed a row."""
        if status.endswith(" 0"):
            return False
        await self.pool.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, tenant_id)
        return True

    async def save(self, route: Route, custom_domain: str | None, domain_at: datetime | None) -> bool:
        """Upsert the live route; True when anything changed."""
        status = await self.pool.execute(
            """
            INSERT INTO routes (tenant_id, route_id, hosts, custom_domain, upstream, bucket, domain_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7)
            ON CONFLICT (tenant_id) DO UPDATE
               SET route_id = EXCLUDED.route_id, hosts = EXCLUDED.hosts, custom_domain = EXCLUDED.custom_domain,
                   upstream = EXCLUDED.upstream, bucket = EXCLUDED.bucket, domain_at = EXCLUDED.domain_at,
                   deleted_at = NULL, updated_at = now()
             WHERE (routes.route_id, routes.hosts, routes.custom_domain, routes.upstream, routes.bucket,
                    routes.domain_at, routes.deleted_at)
                   IS DISTINCT FROM (EXCLUDED.route_id, EXCLUDED.hosts, EXCLUDED.custom_domain,
                                     EXCLUDED.upstream, EXCLUDED.bucket, EXCLUDED.domain_at, NULL::timestamptz)
            """,
            route.tenant_id, route.route_id, list(route.hosts), custom_domain, route.upstream, route.bucket,
            domain_at)
        return await self._changed(status, route.tenant_id)

    async def tombstone(self, route: Route, at: datetime) -> None:
        """The tenant's route is gone as of `at` (the resolver stops answering its names);
        the row stays as a marker against late events (inserted if the tenant never had a
        route, e.g. deleted while still provisioning)."""
        status = await self.pool.execute(
            """
            INSERT INTO routes (tenant_id, route_id, hosts, upstream, bucket, deleted_at)
            VALUES ($1, $2, $3, '', $4, $5)
            ON CONFLICT (tenant_id) DO UPDATE SET deleted_at = EXCLUDED.deleted_at, updated_at = now()
             WHERE routes.deleted_at IS NULL OR routes.deleted_at < EXCLUDED.deleted_at
            """,
            route.tenant_id, route.route_id, list(route.hosts), route.bucket, at)
        await self._changed(status, route.tenant_id)
