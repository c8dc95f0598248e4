"""The relay's replay rationing against real PostgreSQL (docs/replay.md): originals go
first, each tenant's replayed rows at most `replay_rate` a second, and `events.replay`
re-publishes originals only, never replay output."""

from __future__ import annotations

from typing import Any

import pytest

from contracts.envelope import Envelope
from events.outbox import OutboxRelay, add_to_outbox
from events.replay import replay
from tests.support.relay_fakes import RecordingPublisher, RelayPing

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("running_platform", ["moto"], indirect=True)]


def event(tenant: str, cause: Envelope[Any] | None = None) -> Envelope[Any]:
    return Envelope.new(RelayPing(), tenant_id=tenant, producer="api", cause=cause)


async def test_replays_wait_for_originals_and_go_at_a_rate_per_tenant(event_store_pool):
    async with event_store_pool.acquire() as conn, conn.transaction():
        await add_to_outbox(conn, [event(t) for t in ("hog",) * 6 + ("quiet",) * 2])
    pub = RecordingPublisher()
    relay = OutboxRelay(event_store_pool, pub, replay_rate=2)  # type: ignore[arg-type]
    assert await relay.run_once() == 8  # the originals
    assert await replay(event_store_pool, "hog") == 6 and await replay(event_store_pool, "quiet") == 2
    async with event_store_pool.acquire() as conn, conn.transaction():
        await add_to_outbox(conn, [event("bystander")])
    claimed = await relay.run_once()
    rows = await event_store_pool.fetch("SELECT tenant_id, replay_id FROM outbox WHERE published_at IS NOT NULL "
                                        "AND replay_id IS NOT NULL")
    by_tenant = {t: sum(1 for r in rows if r["tenant_id"] == t) for t in ("hog", "quiet")}
    assert claimed == 1 + 4 and by_tenant == {"hog": 2, "quiet": 2}, (claimed, by_tenant)
    assert pub.published[8] == pub.published[-5] and relay.replays_waiting
    assert await relay.run_once() == 0, "no allowance left this second"
    relay._refilled -= 1.0
    assert await relay.run_once() == 2  # the hog's next two


async def test_replay_output_is_never_replayed(event_store_pool):
    original = event("acme")
    async with event_store_pool.acquire() as conn, conn.transaction():
        await add_to_outbox(conn, [original])
    relay = OutboxRelay(event_store_pool, RecordingPublisher(), replay_rate=0)  # type: ignore[arg-type]
    await relay.run_once()
    assert await replay(event_store_pool, "acme") == 1
    replayed = await event_store_pool.fetchrow("SELECT event_id, replay_id FROM outbox WHERE replay_id IS NOT NULL")
    first = Envelope.new(RelayPing(), tenant_id="acme", producer="api", cause=original)
    effect = event("acme", cause=first.model_copy(update={"replay_id": replayed["replay_id"]}))
    async with event_store_pool.acquire() as conn, conn.transaction():
        await add_to_outbox(conn, [effect])
    await relay.run_once()
    assert effect.replay_id == replayed["replay_id"]
    for _ in range(3):
        assert await replay(event_store_pool, "acme") == 1  # the original only
    assert await event_store_pool.fetchval("SELECT count(*) FROM outbox WHERE event_id = $1", effect.event_id) == 1
