"""Runtime sources on a real bus (both emulators): a rule with the topology's
`{"prefix": "hostplane.runtime."}` source delivers a tenant runtime's events published
under `hostplane.runtime.<tenant>`, and the consumer refuses a forged command that came
through it (deleted, counted, never dead-lettered, the handler never ran)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from prometheus_client import REGISTRY

from contracts.envelope import Envelope
from contracts.events_v1 import ReleaseActivated, TenantDeletionRequested
from events.consumer import Consumer, ConsumerOptions
from events.publisher import PublishEntry, Publisher
from events.store import ensure_schema
from events.topology import QueueSpec, RuleSpec, Topology, topology
from events.topology_apply import apply_topology
from core.aws import aws_client
from tests.support.bus_harness import SERVICE, eventually, remove_topology, running

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
DIGEST = "ab" * 32


def _topology(prefix: str) -> Topology:
    control = topology().sources
    rule = RuleSpec(f"{prefix}-to-{SERVICE}", SERVICE, ("ReleaseActivated", "TenantDeletionRequested"),
                    control, source_prefixes=("hostplane.runtime.",))
    return Topology(bus_name=prefix, archive_name=f"{prefix}-archive",
                    queues=(QueueSpec(SERVICE, f"{prefix}-{SERVICE}", f"{prefix}-{SERVICE}-dlq"),),
                    rules=(rule,), sources=control, source_prefixes=("hostplane.runtime.",))


@pytest.fixture
async def bus(running_platform) -> AsyncIterator[tuple[Any, Topology, Any, str]]:
    prefix = f"rt{uuid.uuid4().hex[:10]}"
    settings, topo = running_platform.settings, _topology(prefix)
    applied = await apply_topology(topo, settings)
    admin = await asyncpg.connect(running_platform.conn.control_dsn)
    await admin.execute(f"CREATE SCHEMA {prefix}")
    pool = await asyncpg.create_pool(running_platform.conn.control_dsn, min_size=1, max_size=6,
                                     server_settings={"search_path": prefix})
    try:
        await ensure_schema(pool)
        yield settings, topo, pool, applied[SERVICE].url
    finally:
        await pool.close()
        await admin.execute(f"DROP SCHEMA {prefix} CASCADE")
        await admin.close()
        await remove_topology(topo, settings)


async def _depths(settings: Any, topo: Topology) -> tuple[int, int]:
    out = []
    async with aws_client("sqs", settings) as sqs:
        for name in (topo.queues[0].name, topo.queues[0].dlq_name):
            url = (await sqs.get_queue_url(QueueName=name))["QueueUrl"]
            attrs = (await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"]))["Attributes"]
            out.append(int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"]))
    return out[0], out[1]


async def test_the_prefix_rule_delivers_runtime_events_and_the_consumer_refuses_forgeries(bus):
    settings, topo, pool, url = bus
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    # matched by the prefix filter: what the runtime (through its agent) publishes
    genuine = Envelope.new(ReleaseActivated(version=1, sha256=DIGEST, swap_ms=5, health_ms=5), tenant_id=tenant,
                           producer="reloader")
    assert genuine.source == f"hostplane.runtime.{tenant}"
    # a tenant runtime forging a deletion of another tenant: only its own source gets through
    forged = Envelope.new(TenantDeletionRequested(requested_by="mallory"), tenant_id="victim", producer="api")
    forged_entry = PublishEntry(str(forged.event_id), None, "hostplane.runtime.mallory", forged.event_type,
                                forged.to_detail())
    # and a runtime event about another tenant
    spoofed = Envelope.new(ReleaseActivated(version=9, sha256=DIGEST, swap_ms=5, health_ms=5), tenant_id="victim",
                           producer="reloader")
    spoofed_entry = PublishEntry(str(spoofed.event_id), None, "hostplane.runtime.mallory", spoofed.event_type,
                                 spoofed.to_detail())
    # sources the rule must not match (an emulator that ignored the prefix operator would)
    unmatched = [PublishEntry(str(uuid.uuid4()), None, source, genuine.event_type, genuine.to_detail())
                 for source in ("hostplane.runtimeX", "other.hostplane.runtime.x", "hostplane.reloader")]
    async with Publisher(settings, topo.bus_name) as pub:
        await pub.publish([genuine, forged_entry, spoofed_entry, *unmatched])
    await eventually(lambda: _equals(_depths(settings, topo), (3, 0)), what="three deliveries through the prefix rule")
    await asyncio.sleep(2)
    assert await _depths(settings, topo) == (3, 0)  # the others were not routed

    handled: list[Envelope[Any]] = []

    async def handler(env, deps):
        handled.append(env)
        return []

    def refused(event_type: str) -> float:
        return REGISTRY.get_sample_value("hostplane_events_refused_total",
                                         {"service": SERVICE, "event_type": event_type}) or 0.0

    before = (refused("TenantDeletionRequested"), refused("ReleaseActivated"))
    consumer = Consumer(SERVICE, {ReleaseActivated: handler, TenantDeletionRequested: handler}, None, pool, settings,
                        topo, options=ConsumerOptions(wait_time_s=1, grace_period_s=5))
    async with running(consumer):
        await eventually(lambda: _equals(_depths(settings, topo), (0, 0)), what="every message settled")
    assert [(e.event_id, e.tenant_id) for e in handled] == [(genuine.event_id, tenant)]
    assert (refused("TenantDeletionRequested"), refused("ReleaseActivated")) == (before[0] + 1, before[1] + 1)
    assert await _depths(settings, topo) == (0, 0)  # nothing waits for a retry, nothing dead-lettered
    published = await pool.fetchval("SELECT count(*) FROM outbox")
    assert published == 0  # a refusal publishes nothing (no MessageDeadLettered either)


async def test_the_rule_pattern_on_the_bus_is_the_topology_s(bus):
    settings, topo, _, _ = bus
    async with aws_client("events", settings) as events:
        rule = await events.describe_rule(Name=topo.rules[0].name, EventBusName=topo.bus_name)
    assert json.loads(rule["EventPattern"])["source"][-1] == {"prefix": "hostplane.runtime."}


async def _equals(value: Any, expected: Any) -> bool:
    return await value == expected
