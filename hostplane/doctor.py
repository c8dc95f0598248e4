"""The orphan scan: anything named like a tenant's resource that belongs to no live tenant.

It reads every place a tenant owns something — PostgreSQL (databases, roles), Valkey
(ACL users, key prefixes in every database), the AWS emulator (buckets, secrets),
router-config's `routes` table (what the edge's route resolver answers), the artifact store and
the runtime registrations —
and reports what no live tenant explains. "Live" is the provisioner's notion
(services.resources.records): provisioning, provisioned or failed; a tenant being
deleted or deleted owns nothing.

Whether a name is a tenant's is decided by the one naming function: a found name is a
tenant's when `tenant_names(candidate)` gives back exactly that name, the candidate
read from where the tenant id sits in the name's template.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from contracts.tenant import InvalidTenantId, tenant_names
from services.resources.records import live_tenants
from services.resources.wiring import TenantResources, resources

_PROBE = "tenantprobe"
# kind → the TenantNames field that names it
FIELDS = {
    "database": "database", "role": "db_role", "cache_user": "cache_user", "cache_keys": "cache_prefix",
    "bucket": "bucket", "secret": "secret", "route": "route_id", "artifacts": "artifact_dir",
    "runtime": "runtime_service",
}


@dataclass(frozen=True, order=True)
class Orphan:
    kind: str
    name: str
    tenant: str
    detail: str = ""

    def to_json(self) -> dict[str, str]:
        return asdict(self)

    def line(self) -> str:
        return f"{self.kind:<11} {self.name}  (tenant {self.tenant}{', ' + self.detail if self.detail else ''})"


def tenant_of(kind: str, name: str, prefix: str) -> str | None:
    """The tenant whose `kind` resource is called `name`, or None if no tenant's would be."""
    field = FIELDS[kind]
    head, _, tail = getattr(tenant_names(_PROBE, prefix=prefix), field).partition(_PROBE)
    if not (name.startswith(head) and name.endswith(tail)) or len(name) <= len(head) + len(tail):
        return None
    middle = name[len(head):len(name) - len(tail)]
    for candidate in dict.fromkeys((middle, middle.replace("_", "-"))):
        try:
            if getattr(tenant_names(candidate, prefix=prefix), field) == name:
                return candidate
        except InvalidTenantId:
            continue
    return None


async def route_rows(pool: Any) -> list[str]:
    """Route ids of the live routes (`routes` table; tombstones excluded): the names the
    route resolver answers, so the edge routes them (Caddy holds no per-tenant state)."""
    if not await pool.fetchval("SELECT to_regclass('routes') IS NOT NULL"):
        return []  # router-config never ran here
    return [r["route_id"] for r in await pool.fetch("SELECT route_id FROM routes WHERE deleted_at IS NULL")]


async def _found(res: TenantResources) -> list[tuple[str, str, str]]:
    """(kind, name, detail) of everything that looks like some tenant's."""
    found = [("database", n, "") for n in await res.database.tenant_like_databases()]
    found += [("role", n, "") for n in await res.database.tenant_like_roles()]
    found += [("cache_user", n, "") for n in await res.cache.tenant_like_users()]
    found += [("cache_keys", p, f"{c} keys") for p, c in (await res.cache.key_prefixes()).items()]
    found += [("bucket", n, "") for n in await res.bucket.all_names()]
    found += [("secret", n, "") for n in await res.secrets.names_under(f"{res.prefix}/")]
    found += [("route", n, "the edge routes it") for n in await route_rows(res.records.pool)]
    found += [("artifacts", n, "") for n in res.artifacts.folders()]
    found += [("runtime", res.names(t).runtime_service, "") for t in await res.runtime.registered()]
    return found


async def find_orphans(res: TenantResources) -> list[Orphan]:
    live = await live_tenants(res.records.pool)
    orphans = []
    for kind, name, detail in await _found(res):
        tenant = tenant_of(kind, name, res.prefix)
        if tenant is not None and tenant not in live:
            orphans.append(Orphan(kind, name, tenant, detail))
    return sorted(orphans)


async def scan(settings: Any) -> list[Orphan]:
    """Connect to the running platform and list its orphans."""
    async with resources(settings) as res:
        return await find_orphans(res)
