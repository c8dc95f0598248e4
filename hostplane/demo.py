"""`hostplane demo`: after `up`, send the example tenant's request through the real bus.

The request is committed to the outbox (as the API does), relayed to EventBridge,
routed by the rules into the queues of the services that consume it, and recorded in
the event log; the demo then shows that history and where the event now waits.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import asyncpg
from rich.console import Console
from rich.table import Table

from contracts import Envelope, TenantRequested
from events.outbox import OutboxRelay, add_to_outbox
from events.publisher import Publisher
from events.replay import list_events
from events.topology import topology
from hostplane.aws import aws_client
from hostplane.local.state import connection_info
from hostplane.settings import Settings

EXAMPLE_TENANT = "demo"
EXAMPLE_SPEC = Path(__file__).resolve().parents[1] / "examples" / "tasks.yaml"


async def _demo(settings: Settings, console: Console) -> None:
    topo = topology(settings.name_prefix)
    digest = hashlib.sha256(EXAMPLE_SPEC.read_bytes()).hexdigest()
    envelope = Envelope.new(
        TenantRequested(spec_ref=f"file:{EXAMPLE_SPEC}", spec_sha256=digest, requested_by="demo"),
        tenant_id=EXAMPLE_TENANT,
        producer="api",
    )
    pool = await asyncpg.create_pool(connection_info(settings.home_dir).control_dsn, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn, conn.transaction():
            await add_to_outbox(conn, [envelope])
        async with Publisher(settings, topo.bus_name) as pub:
            while await OutboxRelay(pool, pub).run_once():
                pass
        records = await list_events(pool, tenant=EXAMPLE_TENANT)
    finally:
        await pool.close()

    table = Table(title=f"event log of tenant {EXAMPLE_TENANT!r}")
    for col in ("seq", "type", "producer", "correlation", "published"):
        table.add_column(col)
    for r in records:
        table.add_row(str(r.seq), r.event_type, r.producer, str(r.correlation_id)[:8],
                      r.published_at.isoformat(timespec="seconds"))
    console.print(table)

    depths = Table(title="where it went: consuming queues")
    for col in ("service", "queue", "waiting", "dead letters"):
        depths.add_column(col)
    async with aws_client("sqs", settings) as sqs:
        for rule in topo.rules:
            if envelope.event_type not in rule.detail_types:
                continue
            q = topo.queue(rule.service)
            counts = []
            for name in (q.name, q.dlq_name):
                url = (await sqs.get_queue_url(QueueName=name))["QueueUrl"]
                attrs = await sqs.get_queue_attributes(
                    QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
                )
                counts.append(attrs["Attributes"]["ApproximateNumberOfMessages"])
            depths.add_row(rule.service, q.name, *counts)
    console.print(depths)
    console.print(
        "The request waits in the queues of the services that consume it; "
        "`hostplane events list --tenant demo` shows the history, `hostplane down` stops everything."
    )


def run_demo(settings: Settings, console: Console) -> None:
    asyncio.run(_demo(settings, console))
