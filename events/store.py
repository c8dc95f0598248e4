"""PostgreSQL tables of the event layer: the outbox (which doubles as the event log) and the inbox.

The outbox holds every event a service commits together with its state change; the relay
publishes pending rows and stamps `published_at`, so a published row *is* the recorded
event `hostplane events list` shows. A replay is a new row with the same `event_id` and a
fresh `replay_id`, hence the unique key on both (NULLS NOT DISTINCT: PostgreSQL ≥ 15).

The inbox remembers which (consumer, envelope dedup key) were handled, so a duplicate
delivery is recognised while a replay (new `replay_id`, new key) is handled again.
"""

from __future__ import annotations

from typing import Any

from contracts.envelope import Envelope

NOTIFY_CHANNEL = "hostplane_outbox"
# Serialises concurrent `ensure_schema` calls (two processes starting at once would race
# on CREATE TABLE IF NOT EXISTS and fail on the catalog's unique index).
_SCHEMA_LOCK = 0x686F7374  # "host"

SCHEMA_SQL = f"""
CREATE TABLE IF NOT EXISTS outbox (
    seq            bigserial PRIMARY KEY,
    event_id       uuid        NOT NULL,
    replay_id      uuid,
    event_type     text        NOT NULL,
    schema_version text        NOT NULL,
    tenant_id      text        NOT NULL,
    correlation_id uuid        NOT NULL,
    causation_id   uuid,
    producer       text        NOT NULL,
    source         text        NOT NULL,
    occurred_at    timestamptz NOT NULL,
    detail         jsonb       NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    published_at   timestamptz,
    attempts       integer     NOT NULL DEFAULT 0,
    last_error     text,
    retry_at       timestamptz,
    CONSTRAINT outbox_event_key UNIQUE NULLS NOT DISTINCT (event_id, replay_id)
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (seq) WHERE published_at IS NULL;
CREATE INDEX IF NOT EXISTS outbox_tenant_time ON outbox (tenant_id, occurred_at);
CREATE INDEX IF NOT EXISTS outbox_type_time ON outbox (event_type, occurred_at);

CREATE TABLE IF NOT EXISTS inbox (
    consumer   text        NOT NULL,
    dedup_key  text        NOT NULL,
    event_id   uuid        NOT NULL,
    handled_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, dedup_key)
);

-- Wake the relay as soon as rows commit (NOTIFY is delivered at commit, never before);
-- one notification per statement is enough, the relay reads everything pending.
CREATE OR REPLACE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{NOTIFY_CHANNEL}', '');
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
"""

OUTBOX_COLUMNS = (
    "event_id, replay_id, event_type, schema_version, tenant_id, correlation_id, causation_id, "
    "producer, source, occurred_at, detail"
)


async def apply_schema(db: Any, sql: str, lock_key: int) -> None:
    """Run idempotent DDL under an advisory lock, so several processes may start at once.

    `db` is an asyncpg pool or connection. Every control-plane table set is created here.
    """
    if hasattr(db, "acquire"):
        async with db.acquire() as conn:
            await apply_schema(conn, sql, lock_key)
        return
    async with db.transaction():
        await db.execute("SELECT pg_advisory_xact_lock($1)", lock_key)
        await db.execute(sql)


async def ensure_schema(db: Any) -> None:
    """Create the event tables if missing."""
    await apply_schema(db, SCHEMA_SQL, _SCHEMA_LOCK)


def outbox_row(envelope: Envelope[Any]) -> tuple[Any, ...]:
    """The outbox columns (OUTBOX_COLUMNS order) of an envelope."""
    return (
        envelope.event_id,
        envelope.replay_id,
        envelope.event_type,
        envelope.schema_version,
        envelope.tenant_id,
        envelope.correlation_id,
        envelope.causation_id,
        envelope.producer,
        envelope.source,
        envelope.occurred_at,
        envelope.to_detail(),
    )


_INSERT = (
    f"INSERT INTO outbox ({OUTBOX_COLUMNS}{{extra_cols}}) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb{extra_vals}) "
    "ON CONFLICT ON CONSTRAINT outbox_event_key DO NOTHING"
)
INSERT_PENDING = _INSERT.format(extra_cols="", extra_vals="")
INSERT_PUBLISHED = _INSERT.format(extra_cols=", published_at", extra_vals=", now()")


async def record_external(conn: Any, envelope: Envelope[Any]) -> bool:
    """Log an event that was published without the outbox (a direct publisher).

    Idempotent: recording the same envelope twice keeps one row. Returns whether a row was added.
    """
    status = await conn.execute(INSERT_PUBLISHED, *outbox_row(envelope))
    return status.endswith(" 1")
