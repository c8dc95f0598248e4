"""The outbox relay against real PostgreSQL: partial failures, backoff, concurrent relays.

The bus side is faked (a recording publisher, tests/support/relay_fakes.py) so failures
can be chosen; the delivery through EventBridge and SQS is proven in test_bus_messaging.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from contracts.envelope import Envelope
from events.outbox import OutboxRelay, add_to_outbox
from events.publisher import MAX_BYTES_PER_CALL
from tests.support.relay_fakes import RecordingPublisher, RelayPing

pytestmark = pytest.mark.integration


def ping(pad: int = 0) -> Envelope[Any]:
    return Envelope.new(RelayPing(pad="x" * pad), tenant_id="relay-test", producer="api")


async def add(pool: asyncpg.Pool, envs: list[Envelope[Any]]) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await add_to_outbox(conn, envs)


async def test_failed_entries_are_recorded_and_retried_later_the_rest_published(event_store_pool):
    envs = [ping() for _ in range(3)]
    await add(event_store_pool, envs)
    bad = str(envs[1].event_id)
    pub = RecordingPublisher(failing={bad})
    relay = OutboxRelay(event_store_pool, pub)  # type: ignore[arg-type]

    assert await relay.run_once() == 3
    rows = {str(r["event_id"]): r
            for r in await event_store_pool.fetch("SELECT *, retry_at > now() AS later FROM outbox")}
    assert rows[bad]["published_at"] is None and rows[bad]["attempts"] == 1 and rows[bad]["later"]
    assert "InternalFailure" in rows[bad]["last_error"]
    assert all(rows[str(e.event_id)]["published_at"] is not None for e in (envs[0], envs[2]))

    assert await relay.run_once() == 0  # backing off: not claimed again at once
    await event_store_pool.execute("UPDATE outbox SET retry_at = now() - interval '1 second'")
    pub.failing.clear()
    assert await relay.run_once() == 1
    assert await event_store_pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0
    assert pub.published == [str(envs[0].event_id), str(envs[2].event_id), bad]


async def test_an_oversized_event_is_recorded_as_failed_without_blocking_others(event_store_pool):
    big, small = ping(pad=MAX_BYTES_PER_CALL), ping()
    await add(event_store_pool, [big, small])
    pub = RecordingPublisher()
    assert await OutboxRelay(event_store_pool, pub).run_once() == 2  # type: ignore[arg-type]
    assert pub.published == [str(small.event_id)]
    row = await event_store_pool.fetchrow("SELECT * FROM outbox WHERE event_id = $1", big.event_id)
    assert row["published_at"] is None and "bytes" in row["last_error"]


async def test_concurrent_relays_publish_each_row_once(event_store_pool):
    envs = [ping() for _ in range(40)]
    await add(event_store_pool, envs)
    pub = RecordingPublisher(delay=0.2)
    relays = [OutboxRelay(event_store_pool, pub, batch_size=5) for _ in range(4)]  # type: ignore[arg-type]

    async def drain(relay: OutboxRelay) -> None:
        while await relay.run_once():
            pass

    await asyncio.wait_for(asyncio.gather(*(drain(r) for r in relays)), 30)
    assert sorted(pub.published) == sorted(str(e.event_id) for e in envs)


async def test_each_services_relay_claims_only_the_sources_its_role_may_publish(event_store_pool):
    """On AWS each task role may PutEvents only under its own source (infra/platform/
    permissions.py): a relay claiming another service's row would fail it on every try."""
    from contracts.envelope import runtime_source
    from events.outbox import relay_sources

    def made_by(producer: str) -> Envelope[Any]:
        return Envelope.new(RelayPing(), tenant_id="relay-test", producer=producer)

    api, builder, runtime = made_by("api"), made_by("builder"), made_by("reloader")
    assert runtime.source == runtime_source("relay-test")
    await add(event_store_pool, [api, builder, runtime])
    published: dict[str, list[str]] = {}
    for service in ("provisioner", "builder", "api"):
        pub = RecordingPublisher()
        await OutboxRelay(event_store_pool, pub, sources=relay_sources(service)).run_once()  # type: ignore[arg-type]
        published[service] = pub.published
    assert published == {"provisioner": [], "builder": [str(builder.event_id)],
                          "api": [str(api.event_id), str(runtime.event_id)]}
    assert await event_store_pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0
