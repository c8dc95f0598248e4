"""An ops replay keeps the original's source (so it passes the consumers' producer check);
a tenant runtime's event logged before runtime sources existed is replayed under its
tenant's runtime source."""

from __future__ import annotations

import pytest

from contracts.envelope import Envelope
from contracts.events_v1 import ReleaseActivated, TenantDeletionRequested
from events.outbox import add_to_outbox
from events.replay import replay

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120),
              pytest.mark.parametrize("running_platform", ["moto"], indirect=True)]


async def test_replays_keep_their_source_and_legacy_runtime_rows_get_the_runtime_source(api_store_pool):
    deletion = Envelope.new(TenantDeletionRequested(), tenant_id="acme", producer="api")
    activated = Envelope.new(ReleaseActivated(version=1, sha256="ab" * 32, swap_ms=1, health_ms=1),
                             tenant_id="acme", producer="reloader")
    async with api_store_pool.acquire() as conn, conn.transaction():
        await add_to_outbox(conn, [deletion, activated])
        await conn.execute("UPDATE outbox SET published_at = now()")
        await conn.execute("UPDATE outbox SET source = 'hostplane.reloader' WHERE producer = 'reloader'")  # history
    assert await replay(api_store_pool, "acme") == 2
    rows = await api_store_pool.fetch("SELECT event_type, source FROM outbox WHERE replay_id IS NOT NULL ORDER BY seq")
    assert [(r["event_type"], r["source"]) for r in rows] == [
        ("TenantDeletionRequested", "hostplane.api"), ("ReleaseActivated", "hostplane.runtime.acme")]
