"""The API's tables in the control database: desired state and the status read model.

- `app_specs`: every accepted spec, as canonical JSON under its sha256 (immutable,
  content-addressed). Events carry `spec:sha256:<digest>` (contracts.app_spec.spec_ref);
  the builder reads the body here. `app_sources`: edited source zips, the same way.
  Both are read and written through artifacts.inputs (what a build starts from).
- `tenants`: the desired state, one row per tenant name: spec digest, custom domain,
  chosen edge (AWS), newest request generation, `deleted_at` once deletion was asked.
  A live tenant is a row with `deleted_at IS NULL` (the registry the orphan scan can use).
- `tenant_requests`: every accepted request (create, update, delete, domain, rollback, idle) with its
  per-tenant generation and correlation id: the projection's ordering key and an audit
  trail of who asked what; and the command published for it (event id, payload,
  incarnation), which stage services honour only as recorded (events.recorded).
  `tenants.incarnation` is a fresh id at every create: events carry it, and a stage
  service changes nothing for an event of another incarnation.
- `tenant_status`: the read model (services.api.projection), one row per tenant.

Writers of one tenant serialise on the same advisory lock the consumer's inbox takes for
the `api` consumer (events.inbox), so a request and the projection of an event never
interleave on a tenant.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from contracts.envelope import Envelope
from events.store import apply_schema
from services.api.projection import Facts, Status

CONSUMER = "api"
_SCHEMA_LOCK = 0x61706921  # "api!": serialises concurrent schema creation

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS app_specs (
    sha256     text PRIMARY KEY,
    body       text        NOT NULL,
    size       integer     NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS app_sources (
    sha256     text PRIMARY KEY,
    body       bytea       NOT NULL,
    size       integer     NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS tenants (
    tenant_id     text PRIMARY KEY,
    spec_sha256   text        NOT NULL REFERENCES app_specs,
    custom_domain text,
    generation    integer     NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    deleted_at    timestamptz
);
-- the spec's static folder last sent (app_sources digest): the same folder again is no change
ALTER TABLE tenants ADD COLUMN IF NOT EXISTS static_sha256 text;
-- the edge the tenant chose at creation (contracts.tenant.EdgeMode); NULL: the installation's default
ALTER TABLE tenants ADD COLUMN IF NOT EXISTS edge text;
-- scale to zero: the tenant's idle period, chosen at creation or changed since (NULL: the
-- platform's default, 0: always on), and its runtime as the runtime's own facts last said
-- (running | asleep | starting), with when
ALTER TABLE tenants ADD COLUMN IF NOT EXISTS idle_after_s integer;
ALTER TABLE tenants ADD COLUMN IF NOT EXISTS runtime text;
ALTER TABLE tenants ADD COLUMN IF NOT EXISTS runtime_at timestamptz;
-- why the host cannot run it (RuntimeFailed's reason, detail and time) while runtime = failed
ALTER TABLE tenants ADD COLUMN IF NOT EXISTS runtime_failure jsonb;
-- the tenant's incarnation: a fresh id at every create (events.recorded); tenants created
-- before incarnations existed get one now (their older events compare by time)
ALTER TABLE tenants ADD COLUMN IF NOT EXISTS incarnation uuid;
UPDATE tenants SET incarnation = gen_random_uuid() WHERE incarnation IS NULL;
CREATE UNIQUE INDEX IF NOT EXISTS tenants_live_domain ON tenants (custom_domain)
    WHERE deleted_at IS NULL AND custom_domain IS NOT NULL;
CREATE TABLE IF NOT EXISTS tenant_requests (
    tenant_id      text        NOT NULL,
    generation     integer     NOT NULL,
    correlation_id uuid        NOT NULL UNIQUE,
    kind           text        NOT NULL CHECK (kind IN ('create', 'update', 'delete', 'domain', 'rollback', 'idle')),
    spec_sha256    text,
    custom_domain  text,
    requested_by   text,
    requested_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, generation)
);
-- databases created before domain changes existed accept them too
-- the command as published (its event id and payload): stage services honour a command
-- only as recorded here (events.recorded); NULL for requests recorded before
ALTER TABLE tenant_requests ADD COLUMN IF NOT EXISTS event_id uuid;
ALTER TABLE tenant_requests ADD COLUMN IF NOT EXISTS command jsonb;
ALTER TABLE tenant_requests ADD COLUMN IF NOT EXISTS incarnation uuid;
ALTER TABLE tenant_requests DROP CONSTRAINT IF EXISTS tenant_requests_kind_check;
ALTER TABLE tenant_requests ADD CONSTRAINT tenant_requests_kind_check
    CHECK (kind IN ('create', 'update', 'delete', 'domain', 'rollback', 'idle'));
CREATE TABLE IF NOT EXISTS tenant_status (
    tenant_id        text PRIMARY KEY,
    state            text        NOT NULL,
    stage            text,
    version          integer,
    last_error       text,
    last_error_stage text,
    last_error_at    timestamptz,
    generation       integer     NOT NULL,
    lifetime         integer     NOT NULL,
    request_kind     text        NOT NULL,
    facts            jsonb       NOT NULL DEFAULT '{}',
    last_event_id    uuid,
    last_event_type  text,
    last_event_at    timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
"""


async def ensure_schema(db: Any) -> None:
    """Create the API's tables if missing."""
    await apply_schema(db, SCHEMA_SQL, _SCHEMA_LOCK)
    from services.api import releases  # the releases read model lives beside the status

    await releases.ensure_schema(db)


async def lock_tenant(conn: Any, tenant_id: str) -> None:
    """The inbox's lock for the `api` consumer: requests and projection take turns."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))", CONSUMER, tenant_id)


async def tenant_row(conn: Any, tenant_id: str) -> Any:
    return await conn.fetchrow("SELECT * FROM tenants WHERE tenant_id = $1", tenant_id)


async def domain_owner(conn: Any, domain: str, other_than: str) -> str | None:
    return await conn.fetchval(
        "SELECT tenant_id FROM tenants WHERE custom_domain = $1 AND deleted_at IS NULL AND tenant_id <> $2",
        domain, other_than,
    )


async def record_request(conn: Any, tenant_id: str, generation: int, correlation_id: uuid.UUID, kind: str,
                         spec_sha256: str | None, domain: str | None, actor: str | None,
                         command: Envelope[Any] | None = None) -> None:
    """One accepted request; with `command`, the event published for it (its id, payload
    and incarnation): what stage services check a command against (events.recorded)."""
    await conn.execute(
        "INSERT INTO tenant_requests (tenant_id, generation, correlation_id, kind, spec_sha256, "
        "custom_domain, requested_by, event_id, command, incarnation) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10)",
        tenant_id, generation, correlation_id, kind, spec_sha256, domain, actor,
        command.event_id if command else None, command.data.model_dump_json() if command else None,
        command.incarnation if command else None,
    )


async def generation_of(conn: Any, tenant_id: str, correlation_id: uuid.UUID) -> int | None:
    return await conn.fetchval(
        "SELECT generation FROM tenant_requests WHERE tenant_id = $1 AND correlation_id = $2",
        tenant_id, correlation_id,
    )


async def load_status(conn: Any, tenant_id: str) -> Status | None:
    row = await conn.fetchrow("SELECT * FROM tenant_status WHERE tenant_id = $1", tenant_id)
    if row is None:
        return None
    return Status(row["tenant_id"], row["generation"], row["lifetime"], row["request_kind"],
                  Facts.from_json(json.loads(row["facts"])))


async def save_status(conn: Any, status: Status, *, event: tuple[uuid.UUID, str, datetime] | None = None) -> None:
    """Upsert the row, with the derived columns a reader (or SQL) wants at hand."""
    failure = status.facts.failure
    event_id, event_type, event_at = event or (None, None, None)
    await conn.execute(
        """
        INSERT INTO tenant_status (tenant_id, state, stage, version, last_error, last_error_stage,
            last_error_at, generation, lifetime, request_kind, facts, last_event_id, last_event_type,
            last_event_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7::text::timestamptz, $8, $9, $10, $11::jsonb, $12, $13, $14)
        ON CONFLICT (tenant_id) DO UPDATE SET
            state = EXCLUDED.state, stage = EXCLUDED.stage, version = EXCLUDED.version,
            last_error = COALESCE(EXCLUDED.last_error, tenant_status.last_error),
            last_error_stage = COALESCE(EXCLUDED.last_error_stage, tenant_status.last_error_stage),
            last_error_at = COALESCE(EXCLUDED.last_error_at, tenant_status.last_error_at),
            generation = EXCLUDED.generation, lifetime = EXCLUDED.lifetime,
            request_kind = EXCLUDED.request_kind, facts = EXCLUDED.facts,
            last_event_id = COALESCE(EXCLUDED.last_event_id, tenant_status.last_event_id),
            last_event_type = COALESCE(EXCLUDED.last_event_type, tenant_status.last_event_type),
            last_event_at = COALESCE(EXCLUDED.last_event_at, tenant_status.last_event_at),
            updated_at = now(),
            created_at = CASE WHEN EXCLUDED.request_kind = 'create'
                              AND EXCLUDED.generation <> tenant_status.generation
                              THEN now() ELSE tenant_status.created_at END
        """,
        status.tenant_id, status.state, status.stage, status.version,
        failure.error if failure else None, failure.stage if failure else None, failure.at if failure else None,
        status.generation, status.lifetime, status.kind, json.dumps(status.facts.to_json()),
        event_id, event_type, event_at,
    )
    # Long-polls waiting on this tenant answer at commit (services.api.watch).
    await conn.execute("SELECT pg_notify('hostplane_status', $1)", status.tenant_id)


_VIEW = """
SELECT t.tenant_id, t.spec_sha256, t.custom_domain, t.edge, t.idle_after_s, t.runtime, t.runtime_failure,
       t.created_at AS requested_at, t.deleted_at,
       s.state, s.stage, s.version, s.last_error, s.last_error_stage, s.last_error_at, s.generation,
       s.request_kind, s.facts, s.last_event_id, s.last_event_type, s.last_event_at, s.created_at,
       s.updated_at, r.correlation_id, r.requested_at AS request_at, r.requested_by
FROM tenants t
JOIN tenant_status s USING (tenant_id)
LEFT JOIN tenant_requests r ON r.tenant_id = t.tenant_id AND r.generation = s.generation
"""


async def read_tenant(db: Any, tenant_id: str) -> Any:
    return await db.fetchrow(_VIEW + " WHERE t.tenant_id = $1", tenant_id)


async def read_tenants(db: Any, *, include_deleted: bool = False) -> list[Any]:
    where = "" if include_deleted else " WHERE s.state <> 'deleted'"
    return await db.fetch(_VIEW + where + " ORDER BY t.tenant_id")


# What each runtime fact says of the tenant's runtime (the newest fact wins, by occurred_at).
RUNTIME_FACTS = {"ReleaseActivated": "running", "RuntimeSlept": "asleep", "RuntimeWoke": "starting",
                 "RuntimeFailed": "failed"}


async def record_runtime(conn: Any, envelope: Any) -> None:
    """Keep `tenants.runtime` at what the newest runtime fact says, and with RuntimeFailed its
    reason (any other fact clears it); older or repeated facts (at-least-once, any order,
    replays) change nothing."""
    if (runtime := RUNTIME_FACTS.get(envelope.event_type)) is None:
        return
    failure = None
    if envelope.event_type == "RuntimeFailed":
        failure = json.dumps({"reason": envelope.data.reason, "detail": envelope.data.detail,
                              "at": envelope.occurred_at.isoformat()})
    await conn.execute(
        "UPDATE tenants SET runtime = $2, runtime_at = $3, runtime_failure = $4::jsonb WHERE tenant_id = $1 "
        "AND (runtime_at IS NULL OR runtime_at < $3)", envelope.tenant_id, runtime, envelope.occurred_at, failure)
