"""Run one control-plane service: its consumer and its outbox relay, side by side.

Every service's `main.py` builds its adapters and calls `run_service`; the consumer
loop, the relay, the publisher client, the pool and graceful shutdown live here once.
On AWS the control database comes from HOSTPLANE_CONTROL_DSN; locally from the running
platform's state (`hostplane up`).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import asyncpg
import structlog

from contracts.envelope import Event
from events.consumer import Consumer, ConsumerOptions, Handler
from events.outbox import OutboxRelay, relay_sources
from events.publisher import Publisher
from events.store import ensure_schema
from events.topology import topology
from core import metrics
from core.state import connection_info
from core.logging import configure_logging
from core.settings import Settings, get_settings

log = structlog.get_logger(__name__)


def control_dsn(settings: Settings) -> str:
    return os.environ.get("HOSTPLANE_CONTROL_DSN") or connection_info(settings.home_dir).control_dsn


async def create_pool(settings: Settings, size: int) -> asyncpg.Pool:
    return await asyncpg.create_pool(control_dsn(settings), min_size=1, max_size=size)


async def run_service(
    service: str,
    handlers: Mapping[type[Event], Handler],
    bootstrap: Callable[[Settings, asyncpg.Pool], Awaitable[Any]],
    *,
    concurrency: int = 4,
    options: ConsumerOptions | None = None,
    settings: Settings | None = None,
) -> None:
    """Consume `service`'s queue until SIGTERM/SIGINT, relaying its outbox meanwhile."""
    settings = settings or get_settings()
    pool = await create_pool(settings, concurrency + 3)  # handlers + relay (+ its listener)
    try:
        await ensure_schema(pool)
        deps = await bootstrap(settings, pool)
        topo = topology(settings.name_prefix)
        handlers = {cls: metrics.instrument(service, cls.event_type, fn) for cls, fn in handlers.items()}
        metrics_server, metrics_port = metrics.serve(settings.host, settings.metrics_port)
        spec = topo.queue(service)
        gauges = asyncio.create_task(metrics.refresh_gauges(pool, settings, spec.name, spec.dlq_name))
        async with Publisher(settings, topo.bus_name) as publisher:
            relay = OutboxRelay(pool, publisher, sources=relay_sources(service))
            relay_task = asyncio.create_task(relay.run())
            options = options or ConsumerOptions(visibility_timeout_s=settings.redelivery_s,
                                                 retry_delay_s=settings.retry_delay_s)
            consumer = Consumer(service, handlers, deps, pool, settings, topo, concurrency, options=options)
            _mark_ready(f"http://{settings.host}:{metrics_port}/metrics")
            try:
                await consumer.run(handle_signals=True)
            finally:
                relay.stop()
                await relay_task
                gauges.cancel()
                await asyncio.gather(gauges, return_exceptions=True)
                metrics_server.shutdown()
                metrics_server.server_close()
        close = getattr(deps, "aclose", None)
        if close is not None:
            await close()
    finally:
        await pool.close()
    log.info("service.stopped", service=service)


def _mark_ready(metrics_url: str) -> None:
    """Tell the launcher (hostplane up) this service consumes; see hostplane.local.services.
    The metrics URL goes beside the ready file (`<name>.metrics`) for `hostplane status`."""
    path = os.environ.get("HOSTPLANE_READY_FILE")
    if path:
        with open(path + ".metrics", "w") as fh:
            fh.write(metrics_url)
        with open(path, "w") as fh:
            fh.write(str(os.getpid()))


def main(service: str, handlers: Mapping[type[Event], Handler],
         bootstrap: Callable[[Settings, asyncpg.Pool], Awaitable[Any]], **kwargs: Any) -> None:
    """Entry point for `python -m services.<name>`: JSON logs, then run until stopped."""
    configure_logging(json_output=True, service=service)
    structlog.contextvars.bind_contextvars(service=service)
    asyncio.run(run_service(service, handlers, bootstrap, **kwargs))
