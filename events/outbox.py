"""Transactional outbox: events commit with the state change that caused them, a relay publishes.

A service writes its state and calls `add_to_outbox` in the same transaction, so either
both commit or neither does. `OutboxRelay` then publishes pending rows in `seq` order and
stamps `published_at`. A crash after commit loses nothing (the rows stay pending until a
relay runs); a crash after publishing but before stamping publishes again, and consumers'
inboxes absorb the duplicate. Rows are claimed with `FOR UPDATE SKIP LOCKED`, so several
relays can run side by side without publishing a row twice concurrently.

Replays go at a lower priority and a bounded rate per tenant: a batch takes pending
originals first, then of each tenant's replayed rows at most what the replay budget allows
(`replay_rate` rows a second *per tenant*, a token bucket of one second's worth;
HOSTPLANE_REPLAY_RATE, default 2). A tenant's events are handled one at a time by every
consumer (events.consumer), so its replays are let onto the bus no faster than they can
be worked off: an ops replay (and what it causes, which carries its replay_id) never
builds a backlog that other tenants' work queues behind (docs/replay.md).

The relay wakes on NOTIFY (the insert trigger in events.store) and also polls, because a
notification is lost while the relay is disconnected.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable
from typing import Any

import structlog

from contracts.envelope import RUNTIME_SOURCE_PREFIX, SOURCE_PREFIX, Envelope
from events.publisher import FailedEntry, PublishEntry, Publisher, PublishError, oversized
from events.store import INSERT_PENDING, NOTIFY_CHANNEL, outbox_row

log = structlog.get_logger(__name__)

# The oldest `$3` pending replayed rows of each tenant (then at most `$1` in all).
_CLAIM_REPLAYS = """
SELECT seq, event_id::text, replay_id::text, event_type, source, detail::text AS detail, tenant_id
FROM outbox
WHERE seq IN (
    SELECT seq FROM (
        SELECT seq, row_number() OVER (PARTITION BY tenant_id ORDER BY seq) AS nth
        FROM outbox
        WHERE published_at IS NULL AND replay_id IS NOT NULL AND (retry_at IS NULL OR retry_at <= now())
          AND ($2::text[] IS NULL OR source LIKE ANY($2::text[]))
    ) pending WHERE nth <= $3
)
ORDER BY seq
LIMIT $1
FOR UPDATE SKIP LOCKED
"""
MAX_RETRY_DELAY_S = 300


def default_replay_rate() -> float:
    """Replayed rows of one tenant a relay publishes per second (HOSTPLANE_REPLAY_RATE; 0: no limit)."""
    try:
        return max(0.0, float(os.environ.get("HOSTPLANE_REPLAY_RATE", "2")))
    except ValueError:
        return 2.0


async def add_to_outbox(conn: Any, envelopes: Iterable[Envelope[Any]]) -> None:
    """Queue envelopes for publication. Call inside the caller's transaction so the
    events commit (and become visible to the relay) only with the state change."""
    rows = [outbox_row(e) for e in envelopes]
    if rows:
        await conn.executemany(INSERT_PENDING, rows)


_CLAIM = """
SELECT seq, event_id::text, replay_id::text, event_type, source, detail::text AS detail
FROM outbox
WHERE published_at IS NULL AND (retry_at IS NULL OR retry_at <= now())
  AND ($2::text[] IS NULL OR source LIKE ANY($2::text[]))
  AND replay_id IS NULL
ORDER BY seq
LIMIT $1
FOR UPDATE SKIP LOCKED
"""


def relay_sources(service: str) -> tuple[str, ...]:
    """LIKE patterns of the outbox rows `service`'s relay publishes: exactly the sources its
    AWS task role may put on the bus (infra/platform/permissions.py reads this). Every
    service's own events, replays included (a replay keeps its source); the API also the
    replays of tenant runtimes' events, which no control-plane service produces."""
    own = (SOURCE_PREFIX + service,)
    return own + (RUNTIME_SOURCE_PREFIX + "%",) if service == "api" else own


_MARK_PUBLISHED = """
UPDATE outbox SET published_at = now(), attempts = attempts + 1, last_error = NULL, retry_at = NULL
WHERE seq = ANY($1::bigint[])
"""
# Back off per row: 2, 4, 8 ... seconds, capped, so one poisoned row does not spin the relay.
_MARK_FAILED = f"""
UPDATE outbox SET attempts = attempts + 1, last_error = $2,
    retry_at = now() + make_interval(secs => least(power(2, attempts + 1), {MAX_RETRY_DELAY_S}))
WHERE seq = $1
"""


def _count_by_tenant(rows: list[Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in rows:
        tenant = r["tenant_id"]
        counts[tenant] = counts.get(tenant, 0) + 1
    return counts


class OutboxRelay:
    """Publishes pending outbox rows through `publisher` until `stop()`. With `sources`
    (LIKE patterns, `relay_sources()`), only rows whose source matches one: on AWS each
    service's role may publish only its own source, so a relay never claims another's row."""

    def __init__(
        self,
        pool: Any,
        publisher: Publisher,
        *,
        batch_size: int = 100,
        poll_interval_s: float = 5.0,
        sources: tuple[str, ...] | None = None,
        replay_rate: float | None = None,
    ) -> None:
        self.pool = pool
        self.replay_rate = default_replay_rate() if replay_rate is None else replay_rate
        self._tokens = max(self.replay_rate, 1.0)
        self._refilled = time.monotonic()
        self.replays_waiting = False  # the budget ran out with replays still pending
        self.sources = list(sources) if sources is not None else None
        self.publisher = publisher
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self._wake = asyncio.Event()
        self._stopping = False
        self.listening = False  # NOTIFY subscribed (else only the poll wakes the relay)

    def stop(self) -> None:
        """Finish the batch in hand, then return from `run()`."""
        self._stopping = True
        self._wake.set()

    async def run_once(self) -> int:
        """Claim one batch, publish it, record the outcome. Returns rows claimed."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = list(await conn.fetch(_CLAIM, self.batch_size, self.sources))
            budget, room = self._replay_budget(), self.batch_size - len(rows)
            self.replays_waiting = False
            if budget > 0 and room > 0:
                replays = await conn.fetch(_CLAIM_REPLAYS, room, self.sources, budget)
                if replays:  # every tenant had `budget` rows of allowance: spent alike
                    per_tenant = max(_count_by_tenant(replays).values())
                    self._tokens -= per_tenant
                    self.replays_waiting = per_tenant == budget or len(replays) == room
                rows += replays
            if not rows:
                return 0
            by_key = {(r["event_id"], r["replay_id"]): r["seq"] for r in rows}
            entries = [
                PublishEntry(r["event_id"], r["replay_id"], r["source"], r["event_type"], r["detail"])
                for r in rows
            ]
            failed = oversized(entries)  # never publishable: record, don't block the batch
            too_big = {f.entry for f in failed}
            try:
                await self.publisher.publish([e for e in entries if e not in too_big])
            except PublishError as exc:
                failed += exc.failed
            except Exception as exc:  # unknown outcome: retry them all later
                failed = [FailedEntry(e, f"{type(exc).__name__}: {exc}") for e in entries]
            bad = {by_key[(f.entry.event_id, f.entry.replay_id)]: f.error for f in failed}
            good = [seq for seq in by_key.values() if seq not in bad]
            if good:
                await conn.execute(_MARK_PUBLISHED, good)
            for seq, error in bad.items():
                await conn.execute(_MARK_FAILED, seq, error[:2000])
        if bad:
            log.warning("outbox.publish_failed", failed=len(bad), published=len(good))
        log.debug("outbox.relayed", published=len(good))
        return len(rows)

    def _replay_budget(self) -> int:
        """Replayed rows of each tenant this batch may take (the token bucket, refilled by
        elapsed time; one bucket stands for every tenant's, as each gets the same allowance)."""
        if self.replay_rate <= 0:
            return self.batch_size
        now = time.monotonic()
        cap = max(self.replay_rate, 1.0)
        self._tokens = min(cap, self._tokens + (now - self._refilled) * self.replay_rate)
        self._refilled = now
        return int(self._tokens)

    async def run(self) -> None:
        """Relay until stopped: drain what is pending, then sleep until NOTIFY or the poll."""
        async with self.pool.acquire() as listen_conn:
            self.listening = await self._listen(listen_conn)
            while not self._stopping:
                self._wake.clear()
                try:
                    claimed = await self.run_once()
                except Exception:
                    log.exception("outbox.relay_error")
                    claimed = 0
                if claimed >= self.batch_size:
                    continue  # more may be waiting
                wait = self.poll_interval_s
                if self.replays_waiting or self._replay_budget() < 1:  # come back when a token is due
                    wait = min(wait, max(1.0 / max(self.replay_rate, 1e-3), 0.05))
                try:
                    await asyncio.wait_for(self._wake.wait(), wait)
                except TimeoutError:
                    pass  # the poll: covers notifications missed while disconnected
            if self.listening and not listen_conn.is_closed():
                await listen_conn.remove_listener(NOTIFY_CHANNEL, self._on_notify)
            self.listening = False
        log.info("outbox.relay_stopped")

    def _on_notify(self, *_: Any) -> None:
        self._wake.set()

    async def _listen(self, conn: Any) -> bool:
        try:
            await conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
            return True
        except Exception:  # polling still works
            log.warning("outbox.listen_failed", exc_info=True)
            return False

