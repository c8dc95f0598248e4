"""The event layer against real servers: EventBridge + SQS on each emulator, PostgreSQL.

Every test gets its own bus, rule, queue + DLQ (unique prefix) and its own PostgreSQL
schema holding the outbox and inbox, so tests cannot see each other's messages or rows.
Each proves one promise of DESIGN.md "Messaging rules"; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import asyncpg
import pytest

from contracts.envelope import Envelope, Event
from events.consumer import Consumer, ConsumerOptions
from events.dlq import list_dlq, redrive
from events.inbox import PgInbox
from events.outbox import OutboxRelay, add_to_outbox
from events.publisher import Publisher
from events.replay import list_events, replay
from events.store import ensure_schema
from events.topology import MAX_RECEIVES, QueueSpec, RuleSpec, Topology
from events.topology_apply import apply_topology
from core.aws import aws_client
from tests.support.bus_harness import SERVICE, eventually, remove_topology, running

pytestmark = pytest.mark.integration

PRODUCER = "bustest"


class BusPing(Event):  # test-only payload, not registered: the catalog stays untouched
    event_type: ClassVar[str] = "BusPing"
    schema_version: ClassVar[str] = "1.0"
    producers: ClassVar[tuple[str, ...]] = (PRODUCER,)  # the consumer refuses any other source
    n: int = 0


class BusPong(Event):
    event_type: ClassVar[str] = "BusPong"
    schema_version: ClassVar[str] = "1.0"
    producers: ClassVar[tuple[str, ...]] = (PRODUCER,)
    n: int = 0


@dataclass
class Bus:
    settings: Any
    topology: Topology
    pool: asyncpg.Pool
    queue_url: str
    tenant: str

    def ping(self, n: int = 0, tenant: str | None = None) -> Envelope[Any]:
        return Envelope.new(BusPing(n=n), tenant_id=tenant or self.tenant, producer=PRODUCER)

    def publisher(self) -> Publisher:
        return Publisher(self.settings, self.topology.bus_name)

    def consumer(self, handler: Callable[..., Awaitable[Any]], concurrency: int = 4, **options: Any) -> Consumer:
        opts = ConsumerOptions(**({"wait_time_s": 1, "grace_period_s": 5} | options))
        return Consumer(SERVICE, {BusPing: handler}, None, self.pool, self.settings, self.topology,
                        concurrency, options=opts)

    async def depth(self) -> int:
        async with aws_client("sqs", self.settings) as sqs:
            attrs = (await sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["All"]))["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def _topology(prefix: str) -> Topology:
    source = f"hostplane.{PRODUCER}"
    return Topology(
        bus_name=prefix,
        archive_name=f"{prefix}-archive",
        queues=(QueueSpec(SERVICE, f"{prefix}-{SERVICE}", f"{prefix}-{SERVICE}-dlq"),),
        rules=(RuleSpec(f"{prefix}-to-{SERVICE}", SERVICE, ("BusPing",), (source,)),),
        sources=(source,),
    )


@pytest.fixture
async def bus(running_platform) -> AsyncIterator[Bus]:
    prefix = f"bt{uuid.uuid4().hex[:10]}"
    settings = running_platform.settings
    topo = _topology(prefix)
    applied = await apply_topology(topo, settings)
    dsn = running_platform.conn.control_dsn
    admin = await asyncpg.connect(dsn)
    await admin.execute(f"CREATE SCHEMA {prefix}")
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=12, server_settings={"search_path": prefix})
    try:
        await ensure_schema(pool)
        yield Bus(settings, topo, pool, applied[SERVICE].url, tenant=f"t-{prefix}")
    finally:
        await pool.close()
        await admin.execute(f"DROP SCHEMA {prefix} CASCADE")
        await admin.close()
        await remove_topology(topo, settings)


async def _zero(depth: Awaitable[int]) -> bool:
    return await depth == 0


async def _equals(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


async def _count(items: Awaitable[list[Any]]) -> int:
    return len(await items)


async def test_published_event_reaches_the_handler_through_rule_and_queue(bus):
    got = []

    async def handler(env, deps):
        got.append(env)
        return [BusPong(n=env.data.n + 1)]

    sent = bus.ping(7)
    async with bus.publisher() as pub:
        await pub.publish([sent])
    async with running(bus.consumer(handler)):
        await eventually(lambda: got, what="the handler")
        await eventually(lambda: _zero(bus.depth()), what="the message to be deleted")
    assert [(e.event_id, e.data) for e in got] == [(sent.event_id, BusPing(n=7))]
    row = await bus.pool.fetchrow("SELECT * FROM outbox")
    assert row["event_type"] == "BusPong" and row["causation_id"] == sent.event_id
    assert row["correlation_id"] == sent.correlation_id and row["producer"] == SERVICE


async def test_failing_message_goes_to_the_dlq_after_max_receives_and_redrive_returns_it(bus):
    attempts = []

    async def failing(env, deps):
        attempts.append(env.event_id)
        raise RuntimeError("always fails")

    sent = bus.ping()
    async with bus.publisher() as pub:
        await pub.publish([sent])

    async def dead() -> int:
        return (await list_dlq(bus.settings, bus.topology))[0].depth

    async with running(bus.consumer(failing, retry_delay_s=0)):
        await eventually(dead, timeout=90, what="the message in the DLQ")
    assert attempts == [sent.event_id] * MAX_RECEIVES

    for _ in range(2):  # listing peeks: it does not consume
        [report] = await list_dlq(bus.settings, bus.topology, SERVICE)
        assert report.depth == 1
        [m] = report.messages
        assert (m.event_id, m.tenant_id, m.event_type) == (str(sent.event_id), bus.tenant, "BusPing")

    assert await redrive(bus.settings, bus.topology, SERVICE) == 1
    assert await dead() == 0
    handled = []

    async def fixed(env, deps):
        handled.append(env.event_id)
        return []

    async with running(bus.consumer(fixed)):
        await eventually(lambda: handled, what="the redriven message")
    assert handled == [sent.event_id]


async def test_the_same_event_delivered_twice_runs_the_handler_once(bus):
    calls = []

    async def handler(env, deps):
        calls.append(env.event_id)
        return [BusPong()]

    sent = bus.ping()
    async with bus.publisher() as pub:
        await pub.publish([sent])
        await pub.publish([sent])  # EventBridge gives it a new id: only the envelope's key can tell
    await eventually(lambda: _equals(bus.depth(), 2), what="both deliveries queued")
    async with running(bus.consumer(handler, concurrency=1)):
        await eventually(lambda: _zero(bus.depth()), what="both deliveries consumed")
    assert calls == [sent.event_id]
    assert await bus.pool.fetchval("SELECT count(*) FROM outbox") == 1
    assert await bus.pool.fetchval("SELECT count(*) FROM inbox WHERE consumer = $1", SERVICE) == 1


async def test_events_committed_before_a_crash_are_published_by_the_next_relay(bus):
    sent = bus.ping(3)
    async with bus.pool.acquire() as conn, conn.transaction():  # state change + event, together
        await conn.execute("CREATE TABLE tenant_state (tenant text PRIMARY KEY)")
        await conn.execute("INSERT INTO tenant_state VALUES ($1)", bus.tenant)
        await add_to_outbox(conn, [sent])
    # ...and the process dies here: nothing was published.
    await asyncio.sleep(1)
    assert await bus.depth() == 0
    assert await bus.pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 1

    got = []

    async def handler(env, deps):
        got.append(env.event_id)
        return []

    relay = OutboxRelay(bus.pool, bus.publisher(), poll_interval_s=60)  # a fresh one, after restart
    async with running(relay, bus.consumer(handler)):
        await eventually(lambda: got, what="the recovered event")
    assert got == [sent.event_id]
    assert await bus.pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0


async def test_replay_redelivers_events_marked_as_replays(bus):
    got = []

    async def handler(env, deps):
        got.append((env.event_id, env.replay_id))
        return []

    sent = bus.ping()
    # poll_interval 60: within the test only NOTIFY can wake the relay
    relay = OutboxRelay(bus.pool, bus.publisher(), poll_interval_s=60)
    async with running(relay, bus.consumer(handler)):
        await eventually(lambda: relay.listening, timeout=10, what="the relay to listen")
        async with bus.pool.acquire() as conn, conn.transaction():
            await add_to_outbox(conn, [sent])
        await eventually(lambda: len(got) == 1, what="the original delivery")
        # the relay stamps published_at just after PutEvents: the handler can be quicker
        await eventually(lambda: list_events(bus.pool, tenant=bus.tenant), what="the event recorded")
        assert await replay(bus.pool, tenant=bus.tenant) == 1
        await eventually(lambda: len(got) == 2, what="the replayed delivery")
        recorded = lambda: _count(list_events(bus.pool, tenant=bus.tenant))  # noqa: E731
        await eventually(lambda: _equals(recorded(), 2), what="the replay recorded")
    assert got[0] == (sent.event_id, None)
    assert got[1][0] == sent.event_id and got[1][1] is not None
    log = await list_events(bus.pool, tenant=bus.tenant)
    assert [(r.event_id, r.replay_id) for r in log] == got


async def test_a_slow_handler_keeps_its_message_invisible(bus):
    calls = []

    async def slow(env, deps):
        calls.append(env.event_id)
        await asyncio.sleep(7)  # more than twice the visibility timeout
        return []

    async with bus.publisher() as pub:
        await pub.publish([bus.ping()])
    # concurrency 1: with the message in hand the consumer stops polling, only our receiver looks
    async with running(bus.consumer(slow, concurrency=1, visibility_timeout_s=2, heartbeat_s=0.5)):
        await eventually(lambda: calls, what="the handler to start")
        async with aws_client("sqs", bus.settings) as sqs:  # another consumer, looking meanwhile
            seen = []
            while len(calls) == 1 and await bus.depth() > 0 and len(seen) == 0:
                resp = await sqs.receive_message(QueueUrl=bus.queue_url, WaitTimeSeconds=1, VisibilityTimeout=1)
                seen += resp.get("Messages", [])
        await eventually(lambda: _zero(bus.depth()), what="the message to be deleted")
    assert seen == [] and len(calls) == 1


async def test_one_tenant_is_handled_by_one_replica_at_a_time(bus):
    other = f"u{bus.tenant[1:]}"
    spans: list[tuple[str, float, float]] = []

    async def handler(env, deps):
        start = time.monotonic()
        await asyncio.sleep(0.6)
        spans.append((env.tenant_id, start, time.monotonic()))
        return []

    async with bus.publisher() as pub:
        await pub.publish([bus.ping(i, tenant) for i in range(3) for tenant in (bus.tenant, other)])
    await eventually(lambda: _equals(bus.depth(), 6), what="six messages queued")
    replicas = [bus.consumer(handler, concurrency=3) for _ in range(2)]
    async with running(*replicas):
        await eventually(lambda: len(spans) == 6, timeout=60, what="six handled")

    def overlap(a: tuple[str, float, float], b: tuple[str, float, float]) -> bool:
        return a[1] < b[2] and b[1] < a[2]

    pairs = [(a, b) for i, a in enumerate(spans) for b in spans[i + 1:]]
    assert not [p for p in pairs if p[0][0] == p[1][0] and overlap(*p)], "one tenant ran twice at once"
    assert [p for p in pairs if p[0][0] != p[1][0] and overlap(*p)], "two tenants never ran together"


async def test_the_tenant_lock_holds_across_replicas(bus):
    first, second = PgInbox(bus.pool, SERVICE), PgInbox(bus.pool, SERVICE)  # two replicas
    async with first.exclusive(bus.tenant):
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1):
                async with second.exclusive(bus.tenant):
                    pass
        async with asyncio.timeout(5):
            async with second.exclusive(f"u{bus.tenant[1:]}"):  # another tenant is not held up
                pass
    async with asyncio.timeout(5):
        async with second.exclusive(bus.tenant):  # released with the first transaction
            pass
