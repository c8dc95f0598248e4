"""The event log (published outbox rows) and ops replay.

A replay re-inserts recorded events into the outbox with the same `event_id` and a fresh
`replay_id` (what `Envelope.as_replay()` does, done in SQL so events whose model is gone
still replay). The relay publishes them through the same bus; consumers handle them again
on purpose because the inbox key includes the replay id. Only originals are replayed, so
replaying twice does not multiply earlier replays. A replay keeps the original's source,
so it passes the consumers' producer check (events.consumer); a tenant runtime's event
logged before runtime sources existed (`hostplane.reloader`) is re-published under its
tenant's runtime source.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from contracts.envelope import RUNTIME_PRODUCERS, RUNTIME_SOURCE_PREFIX
from events.store import OUTBOX_COLUMNS

DEFAULT_LIMIT = 1000


@dataclass(frozen=True)
class EventRecord:
    seq: int
    event_id: uuid.UUID
    replay_id: uuid.UUID | None
    event_type: str
    schema_version: str
    tenant_id: str
    correlation_id: uuid.UUID
    causation_id: uuid.UUID | None
    producer: str
    occurred_at: datetime
    published_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            k: (str(v) if isinstance(v, uuid.UUID) else v.isoformat() if isinstance(v, datetime) else v)
            for k, v in asdict(self).items()
        }


def _filters(
    tenant: str | None, event_type: str | None, since: datetime | None
) -> tuple[str, list[Any]]:
    clauses, args = ["published_at IS NOT NULL"], []
    for column, op, value in (
        ("tenant_id", "=", tenant),
        ("event_type", "=", event_type),
        ("occurred_at", ">=", since),
    ):
        if value is not None:
            args.append(value)
            clauses.append(f"{column} {op} ${len(args)}")
    return " AND ".join(clauses), args


async def list_events(
    pool: Any,
    tenant: str | None = None,
    event_type: str | None = None,
    since: datetime | None = None,
    limit: int = DEFAULT_LIMIT,
) -> list[EventRecord]:
    """Recorded (published) events matching the filters, oldest first (the last `limit`)."""
    where, args = _filters(tenant, event_type, since)
    args.append(limit)
    rows = await pool.fetch(
        f"""
        SELECT * FROM (
            SELECT seq, event_id, replay_id, event_type, schema_version, tenant_id, correlation_id,
                   causation_id, producer, occurred_at, published_at
            FROM outbox WHERE {where} ORDER BY seq DESC LIMIT ${len(args)}
        ) latest ORDER BY seq
        """,
        *args,
    )
    return [EventRecord(**dict(r)) for r in rows]


async def replay(
    pool: Any,
    tenant: str | None = None,
    event_type: str | None = None,
    since: datetime | None = None,
) -> int:
    """Queue the matching original events for re-publication as replays; returns how many."""
    where, args = _filters(tenant, event_type, since)
    args += [list(RUNTIME_PRODUCERS), RUNTIME_SOURCE_PREFIX]
    runtime, prefix = f"${len(args) - 1}::text[]", f"${len(args)}::text"
    status = await pool.execute(
        f"""
        WITH src AS (
            SELECT *, gen_random_uuid() AS new_replay_id
            FROM outbox WHERE {where} AND replay_id IS NULL
        )
        INSERT INTO outbox ({OUTBOX_COLUMNS})
        SELECT event_id, new_replay_id, event_type, schema_version, tenant_id, correlation_id,
               causation_id, producer,
               CASE WHEN producer = ANY({runtime}) THEN {prefix} || tenant_id ELSE source END, occurred_at,
               jsonb_set(detail, '{{replay_id}}', to_jsonb(new_replay_id::text))
        FROM src ORDER BY seq
        """,
        *args,
    )
    return int(status.split()[-1])
