"""The inbox side of handling a message: per-tenant exclusion, duplicate check, and one
transaction holding the inbox mark, the handler's own writes and its outbox rows.

Per-tenant serialisation uses a PostgreSQL transaction-scoped advisory lock keyed by
(service, tenant), held for the handler's whole run. Why not SQS FIFO message groups: EventBridge
would have to target FIFO queues (group id from a JSON path), moto and LocalStack diverge
there, and ordering would be per queue rather than per service replica set. A lease row would
need expiry and renewal. The advisory lock is exact across replicas, is released by the
database if a replica dies (the session ends), and costs nothing when tenants differ.
A per-tenant asyncio lock in front of it keeps one replica from tying up several pool
connections waiting on the same tenant. Messages waiting for the lock keep their visibility
extended by the consumer, so they are not redelivered meanwhile.

Handlers (or their adapters) that keep state in the control database can write it in the
same transaction through `current_connection()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

from contracts.envelope import Envelope
from events.outbox import add_to_outbox

_current_conn: contextvars.ContextVar[Any] = contextvars.ContextVar("hostplane_handler_conn", default=None)


def current_connection() -> Any:
    """The control-database connection of the message being handled (inside its
    transaction), or None outside a handler."""
    return _current_conn.get()


class AlreadyHandled(Exception):
    """The inbox already holds this (consumer, dedup key): another delivery won."""


class HandlingTx(Protocol):
    async def seen(self, envelope: Envelope[Any]) -> bool: ...

    async def complete(self, envelope: Envelope[Any], emitted: Sequence[Envelope[Any]]) -> None: ...


class Inbox(Protocol):
    def exclusive(self, tenant_id: str) -> contextlib.AbstractAsyncContextManager[HandlingTx]: ...


class TenantLocks:
    """In-process per-key asyncio locks, dropped when nobody holds or waits for them."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


class _PgHandlingTx:
    def __init__(self, conn: Any, consumer: str) -> None:
        self.conn = conn
        self.consumer = consumer

    async def seen(self, envelope: Envelope[Any]) -> bool:
        return bool(
            await self.conn.fetchval(
                "SELECT 1 FROM inbox WHERE consumer = $1 AND dedup_key = $2",
                self.consumer,
                envelope.dedup_key,
            )
        )

    async def complete(self, envelope: Envelope[Any], emitted: Sequence[Envelope[Any]]) -> None:
        added = await self.conn.fetchval(
            "INSERT INTO inbox (consumer, dedup_key, event_id) VALUES ($1, $2, $3) "
            "ON CONFLICT DO NOTHING RETURNING 1",
            self.consumer,
            envelope.dedup_key,
            envelope.event_id,
        )
        if not added:  # cannot happen under the tenant lock; refuse rather than emit twice
            raise AlreadyHandled(envelope.dedup_key)
        await add_to_outbox(self.conn, emitted)


class PgInbox:
    """The real inbox: PostgreSQL, advisory-locked per (consumer, tenant)."""

    def __init__(self, pool: Any, consumer: str) -> None:
        self.pool = pool
        self.consumer = consumer
        self._local = TenantLocks()

    @contextlib.asynccontextmanager
    async def exclusive(self, tenant_id: str) -> AsyncIterator[HandlingTx]:
        """Hold the tenant for this consumer and open the handling transaction; it commits
        when the block exits normally and rolls back (releasing the lock) otherwise."""
        async with self._local.hold(tenant_id), self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))", self.consumer, tenant_id
            )
            token = _current_conn.set(conn)
            try:
                yield _PgHandlingTx(conn, self.consumer)
            finally:
                _current_conn.reset(token)
