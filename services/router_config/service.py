"""Wiring for router-config (STYLE.md: bootstrap): the `routes` table and the edge it
feeds — the route resolver locally (adapters.TableRouter), the tenant stacks on AWS."""

from __future__ import annotations

from typing import Any

import asyncpg

from core.settings import Settings
from services.resources import registry
from services.router_config.adapters import TableRouter
from services.router_config.store import RouteStore


class LocalRouter(TableRouter):
    """TableRouter plus the pool it owns (the consumer's pool stays the consumer's)."""

    own_pool: Any = None

    async def aclose(self) -> None:
        if self.own_pool is not None:
            await self.own_pool.close()


async def open_router(settings: Settings, dsn: str) -> LocalRouter:
    """Connect and make sure the tables it reads exist."""
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4, timeout=10)
    try:
        store = RouteStore(pool)
        await store.ensure_schema()
        async with pool.acquire() as conn:
            await registry.ensure_schema(conn)
    except BaseException:
        await pool.close()
        raise
    router = LocalRouter(store=store, prefix=settings.name_prefix)
    router.own_pool = pool
    return router


async def open_stack_router(settings: Settings, dsn: str) -> Any:
    """HOSTPLANE_TARGET=aws: routes are the tenant stacks' edges (router_config/aws.py);
    a loop attaches custom domains whose certificates were issued since."""
    from services.resources.aws.stacks import TenantStacks
    from services.resources.aws.wiring import AwsTarget
    from services.router_config.aws import AcmCertificates, StackRouterDeps

    target = AwsTarget()  # a missing HOSTPLANE_AWS_* setting fails here, before any message
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4, timeout=10)
    try:
        store = RouteStore(pool)
        await store.ensure_schema()
    except BaseException:
        await pool.close()
        raise
    deps = StackRouterDeps(store=store, stacks=TenantStacks(target.stack_settings(settings)),
                           prefix=settings.name_prefix, base_domain=target.base_domain,
                           certificates=AcmCertificates(settings), own_pool=pool)
    deps.start_pending_loop()
    return deps


async def bootstrap(settings: Settings, pool: Any) -> Any:
    """For services.runner.main (the consumer's pool stays the consumer's)."""
    from services.runner import control_dsn

    if settings.target == "aws":
        return await open_stack_router(settings, control_dsn(settings))
    return await open_router(settings, control_dsn(settings))
