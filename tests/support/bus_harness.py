"""The event layer on real servers, for the integration tests. A test's own topology is for
one consumer service, `SERVICE`, and `remove_topology` deletes it again; `running` runs
consumers and relays for the length of a block, `eventually` waits (bounded) for a
condition. `publish` and `wait_for_event` go through a running platform: its outbox (any
running relay publishes) and its event log."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from contracts.envelope import Envelope
from core.aws import aws_client
from events.consumer import Consumer
from events.outbox import OutboxRelay, add_to_outbox
from events.replay import list_events
from events.topology import Topology

SERVICE = "worker"


async def remove_topology(topo: Topology, settings: Any) -> None:
    async with aws_client("sqs", settings) as sqs, aws_client("events", settings) as events:
        for rule in topo.rules:
            with contextlib.suppress(Exception):
                await events.remove_targets(Rule=rule.name, EventBusName=topo.bus_name, Ids=[f"{SERVICE}-queue"])
                await events.delete_rule(Name=rule.name, EventBusName=topo.bus_name)
        with contextlib.suppress(Exception):
            await events.delete_archive(ArchiveName=topo.archive_name)
        with contextlib.suppress(Exception):
            await events.delete_event_bus(Name=topo.bus_name)
        for name in (topo.queues[0].name, topo.queues[0].dlq_name):
            with contextlib.suppress(Exception):
                await sqs.delete_queue(QueueUrl=(await sqs.get_queue_url(QueueName=name))["QueueUrl"])


async def eventually(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def running(*workers: Consumer | OutboxRelay) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        yield
    finally:
        for w in workers:
            w.stop()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)


async def publish(pool: Any, envelope: Envelope) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await add_to_outbox(conn, [envelope])  # any running relay publishes it


async def wait_for_event(pool: Any, tenant: str, event_type: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await list_events(pool, tenant=tenant, event_type=event_type)
        if found:
            return found[-1]
        await asyncio.sleep(0.2)
    failures = [e.event_type for e in await list_events(pool, tenant=tenant)]
    raise AssertionError(f"no {event_type} for {tenant} within {timeout}s; events so far: {failures}")
