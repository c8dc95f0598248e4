"""Wiring for router-config (STYLE.md: bootstrap): its pool, the Caddy adapter, and the
re-sync loop that brings Caddy back to the `routes` table at start and every
`RESYNC_EVERY_S` (Caddy restarted empty converges within one period)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

import asyncpg
import structlog

from core.aws import endpoint_url
from hostplane.local.edge import base_config
from core.settings import Settings
from reloader import desired
from services.router_config.caddy import CaddyEdge
from services.router_config.handlers import RouterDeps, resync
from services.router_config.routes import static_origin
from services.router_config.store import RouteStore

log = structlog.get_logger(__name__)
RESYNC_EVERY_S = float(os.environ.get("HOSTPLANE_ROUTER_RESYNC_S", "30"))


class RouterService(RouterDeps):
    """RouterDeps plus what the running service owns: its pool and the re-sync task."""

    task: asyncio.Task | None = None
    own_pool: Any = None

    async def aclose(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await super().aclose()
        if self.own_pool is not None:
            await self.own_pool.close()


def caddy_admin_url(settings: Settings) -> str:
    """Caddy's admin address: `unix:///<home>/run/caddy-admin.sock` as `hostplane up` recorded it."""
    if url := os.environ.get("HOSTPLANE_CADDY_ADMIN_URL"):
        return url
    from core.state import connection_info

    return connection_info(settings.home_dir).caddy_admin_url


async def open_router(settings: Settings, dsn: str, *, resync_every: float | None = RESYNC_EVERY_S) -> RouterService:
    """Connect, make sure the tables exist, bring Caddy to the table once, start the loop."""
    admin = caddy_admin_url(settings)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4, timeout=10)
    try:
        store = RouteStore(pool)
        await store.ensure_schema()
        async with pool.acquire() as conn:
            await desired.ensure_schema(conn)
        edge = CaddyEdge(admin, base_config(admin, settings.host, settings.edge_port))
        deps = RouterService(store=store, edge=edge, origin=static_origin(endpoint_url(settings)),
                             prefix=settings.name_prefix)
        deps.own_pool = pool
    except BaseException:
        await pool.close()
        raise
    await _resync_logged(deps)
    if resync_every:
        deps.task = asyncio.create_task(_resync_loop(deps, resync_every))
    return deps


async def _resync_logged(deps: RouterDeps) -> None:
    try:
        await resync(deps)
    except Exception as exc:  # Caddy or the database away: the next round tries again
        log.warning("edge.resync_failed", error=f"{type(exc).__name__}: {exc}"[:300])


async def _resync_loop(deps: RouterDeps, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        await _resync_logged(deps)


async def open_stack_router(settings: Settings, dsn: str) -> Any:
    """HOSTPLANE_TARGET=aws: routes are the tenant stacks' edges (router_config/aws.py);
    no Caddy to write and nothing to re-sync (each `up` converges the whole stack); a loop
    attaches custom domains whose certificates were issued since."""
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


async def make_deps(settings: Settings, pool: Any) -> Any:
    """For services.runner.main (the consumer's pool stays the consumer's)."""
    from services.runner import control_dsn

    if settings.target == "aws":
        return await open_stack_router(settings, control_dsn(settings))
    return await open_router(settings, control_dsn(settings))
