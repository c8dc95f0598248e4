"""Real adapters wired once (STYLE.md: bootstrap): what both lifecycle services and the
orphan doctor receive as their dependencies.

Locally every address comes from the running platform (`hostplane up`); on AWS from
HOSTPLANE_CONTROL_DSN / HOSTPLANE_VALKEY_URL and the AWS defaults. The admin pool is
separate from the consumer's pool: CREATE DATABASE cannot run inside the handling
transaction, and step records must commit on their own.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import redis.asyncio as aredis

from artifacts.tenant import TenantArtifacts
from contracts.tenant import TenantNames, tenant_names
from core.aws import aws_client, endpoint_url
from core.settings import Settings
from events.recorded import RecordedRequests
from services.resources.bucket import TenantBucket
from services.resources.cache import TenantCache
from services.resources.edge import EdgeRoutes
from services.resources.postgres import DatabaseQuotas, TenantDatabase
from services.resources.records import ProvisioningRecords, ensure_records_schema
from services.resources.runtime import RuntimeRegistry
from services.resources.secret import Endpoints, TenantSecrets

ADMIN_POOL_SIZE = 14  # the provisioner runs 12 handlers at once


@dataclass(frozen=True)
class Addresses:
    """Admin connection strings (hold passwords: never print)."""

    control_dsn: str
    valkey_url: str
    caddy_admin_url: str | None = field(default=None)

    def __repr__(self) -> str:
        return "Addresses(<credentials redacted>)"


def addresses(settings: Settings) -> Addresses:
    dsn, valkey = os.environ.get("HOSTPLANE_CONTROL_DSN"), os.environ.get("HOSTPLANE_VALKEY_URL")
    if dsn and valkey:
        return Addresses(dsn, valkey, os.environ.get("HOSTPLANE_CADDY_ADMIN_URL"))
    from core.state import connection_info

    info = connection_info(settings.home_dir)
    return Addresses(dsn or info.control_dsn, valkey or info.valkey_url, info.caddy_admin_url)


def endpoints(settings: Settings, at: Addresses) -> Endpoints:
    """Tenants reach the same servers as the control plane, with their own credentials."""
    db, cache = urlsplit(at.control_dsn), urlsplit(at.valkey_url)
    return Endpoints(
        db_host=db.hostname or settings.host, db_port=db.port or 5432,
        cache_host=cache.hostname or settings.host, cache_port=cache.port or 6379,
        cache_scheme=cache.scheme or "redis", region=settings.region, aws_endpoint=endpoint_url(settings),
    )


def artifact_root(settings: Settings):
    from artifacts.store import store_root  # the one definition, shared with the runtime

    return store_root(settings)


@dataclass
class TenantResources:
    """Every adapter for a tenant's resources, plus the provisioner's records."""

    prefix: str
    endpoints: Endpoints
    records: ProvisioningRecords
    database: TenantDatabase
    cache: TenantCache
    secrets: TenantSecrets
    bucket: TenantBucket
    runtime: RuntimeRegistry
    artifacts: TenantArtifacts
    caddy_admin_url: str | None = None
    edge: Any = None  # EdgeRoutes: what the edge still serves (None: no edge to wait for)
    recorded: Any = None  # events.recorded.RecordedRequests: what the API accepted (None: nothing to compare)
    _stack: contextlib.AsyncExitStack | None = None

    def names(self, tenant_id: str) -> TenantNames:
        return tenant_names(tenant_id, prefix=self.prefix)

    async def aclose(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()


async def open_resources(settings: Settings, *, quotas: DatabaseQuotas | None = None) -> TenantResources:
    """Connect every adapter; the caller closes with `aclose()` (the runner does)."""
    at = addresses(settings)
    stack = contextlib.AsyncExitStack()
    try:
        pool = await asyncpg.create_pool(at.control_dsn, min_size=1, max_size=ADMIN_POOL_SIZE, timeout=10)
        stack.push_async_callback(pool.close)
        await ensure_records_schema(pool)
        cache_client = aredis.Redis.from_url(at.valkey_url, socket_timeout=10, socket_connect_timeout=5)
        stack.push_async_callback(cache_client.aclose)
        sm = await stack.enter_async_context(aws_client("secretsmanager", settings))
        s3 = await stack.enter_async_context(aws_client("s3", settings))
    except BaseException:
        await stack.aclose()
        raise
    runtime = RuntimeRegistry(pool)
    await runtime.ensure_schema()
    # A platform with an edge has its route resolver beside it (hostplane.local.services).
    edge = EdgeRoutes(settings.host, settings.resolver_port) if at.caddy_admin_url else None
    res = TenantResources(
        prefix=settings.name_prefix,
        endpoints=endpoints(settings, at),
        records=ProvisioningRecords(pool),
        database=TenantDatabase(pool, quotas),
        cache=TenantCache(cache_client, url=at.valkey_url),
        secrets=TenantSecrets(sm),
        bucket=TenantBucket(s3, settings.region),
        runtime=runtime,
        artifacts=TenantArtifacts(artifact_root(settings)),
        caddy_admin_url=at.caddy_admin_url,
        edge=edge,
        recorded=RecordedRequests(pool),
        _stack=stack,
    )
    if settings.target == "aws":  # bucket, cache user and runtime through tenant stacks
        from services.resources.aws.wiring import use_tenant_stacks

        use_tenant_stacks(res, settings)
    return res


@contextlib.asynccontextmanager
async def resources(settings: Settings) -> AsyncIterator[TenantResources]:
    res = await open_resources(settings)
    try:
        yield res
    finally:
        await res.aclose()


async def bootstrap(settings: Settings, pool: Any) -> TenantResources:
    """The provisioner's and deprovisioner's deps (STYLE.md: bootstrap); the consumer's pool
    stays the consumer's."""
    return await open_resources(settings)
