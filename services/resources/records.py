"""The provisioner's records in the control database: which tenants it owns resources
for, and how far each tenant's provisioning got.

`provisioned_tenants` has one row per tenant the provisioner (or deprovisioner) has
seen: its state and the time of the newest creation and deletion request handled.
`provisioning_steps` has one row per (tenant, step): started / done / failed, the
outcome of the ensure, attempts and the last error. Step rows are written outside the
handling transaction (autocommit), so they survive the crash or rollback of an attempt
and show where a re-delivery resumes; the final state is written inside it, so it
commits together with the TenantProvisioned / TenantDeprovisioned event (outbox).

A **live tenant** is one whose row is `provisioning`, `provisioned` or `failed` (its
resources are kept for a retry or a teardown). `deprovisioning` and `deprovisioned` are
not live: whatever still exists for them is an orphan. The orphan doctor uses this
notion until the API's tenant table is the registry.

Ordering: a request older than the newest opposite request is stale and ignored, so a
late or replayed TenantRequested never resurrects a deleted tenant, and a replayed
TenantDeletionRequested never deletes its re-creation.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from events.store import apply_schema
from events.inbox import current_connection

LIVE_STATES = ("provisioning", "provisioned", "failed")
_SCHEMA_LOCK = 0x74656E61  # "tena": serialises concurrent schema creation
# Provisioner and deprovisioner of one tenant exclude each other (different consumers,
# so the inbox's per-consumer lock does not): no teardown in the middle of a set-up.
LOCK_NAMESPACE = "hostplane.tenant-resources"

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS provisioned_tenants (
    tenant_id             text PRIMARY KEY,
    state                 text NOT NULL CHECK (state IN
                          ('provisioning', 'provisioned', 'failed', 'deprovisioning', 'deprovisioned')),
    requested_at          timestamptz,
    deletion_requested_at timestamptz,
    correlation_id        uuid,
    failed_stage          text,
    error                 text,
    updated_at            timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS provisioning_steps (
    tenant_id   text NOT NULL REFERENCES provisioned_tenants ON DELETE CASCADE,
    step        text NOT NULL,
    status      text NOT NULL CHECK (status IN ('started', 'done', 'failed')),
    outcome     text,
    attempts    integer NOT NULL DEFAULT 0,
    error       text,
    started_at  timestamptz,
    finished_at timestamptz,
    PRIMARY KEY (tenant_id, step)
);
"""


async def ensure_records_schema(db: Any) -> None:
    """Create the tables if missing; `db` is a pool or a connection."""
    await apply_schema(db, SCHEMA_SQL, _SCHEMA_LOCK)


class ProvisioningRecords:
    def __init__(self, pool: Any) -> None:
        self.pool = pool

    def _tx(self) -> Any:
        """The handling transaction's connection, or the pool outside a handler."""
        return current_connection() or self.pool

    @contextlib.asynccontextmanager
    async def holding(self, tenant_id: str) -> AsyncIterator[None]:
        """Exclude the other lifecycle service for this tenant until the handling
        transaction ends (or, outside a handler, until the block exits)."""
        conn = current_connection()
        if conn is not None:
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))", LOCK_NAMESPACE, tenant_id)
            yield
            return
        async with self.pool.acquire() as own:
            await own.execute("SELECT pg_advisory_lock(hashtext($1), hashtext($2))", LOCK_NAMESPACE, tenant_id)
            try:
                yield
            finally:
                await own.execute("SELECT pg_advisory_unlock(hashtext($1), hashtext($2))", LOCK_NAMESPACE, tenant_id)

    async def start_provisioning(self, tenant_id: str, requested_at: datetime, correlation_id: uuid.UUID) -> bool:
        """Mark the tenant `provisioning`; False when a newer deletion makes the request stale."""
        row = await self.pool.fetchrow(
            """
            INSERT INTO provisioned_tenants AS t (tenant_id, state, requested_at, correlation_id)
            VALUES ($1, 'provisioning', $2, $3)
            ON CONFLICT (tenant_id) DO UPDATE SET
                state = 'provisioning', requested_at = greatest(t.requested_at, $2),
                correlation_id = $3, failed_stage = NULL, error = NULL, updated_at = now()
            WHERE t.deletion_requested_at IS NULL OR t.deletion_requested_at < $2
            RETURNING 1
            """,
            tenant_id, requested_at, correlation_id,
        )
        return row is not None

    async def start_deprovisioning(self, tenant_id: str, requested_at: datetime, correlation_id: uuid.UUID) -> bool:
        """Mark the tenant `deprovisioning`; False when a newer creation makes it stale."""
        row = await self.pool.fetchrow(
            """
            INSERT INTO provisioned_tenants AS t (tenant_id, state, deletion_requested_at, correlation_id)
            VALUES ($1, 'deprovisioning', $2, $3)
            ON CONFLICT (tenant_id) DO UPDATE SET
                state = 'deprovisioning', deletion_requested_at = greatest(t.deletion_requested_at, $2),
                correlation_id = $3, failed_stage = NULL, error = NULL, updated_at = now()
            WHERE t.requested_at IS NULL OR t.requested_at <= $2
            RETURNING 1
            """,
            tenant_id, requested_at, correlation_id,
        )
        return row is not None

    async def step_started(self, tenant_id: str, step: str) -> None:
        await self.pool.execute(
            """
            INSERT INTO provisioning_steps AS s (tenant_id, step, status, attempts, started_at)
            VALUES ($1, $2, 'started', 1, now())
            ON CONFLICT (tenant_id, step) DO UPDATE SET
                status = 'started', attempts = s.attempts + 1, started_at = now(), finished_at = NULL
            """,
            tenant_id, step,
        )

    async def step_finished(self, tenant_id: str, step: str, outcome: str | None, error: str | None = None) -> None:
        await self.pool.execute(
            "UPDATE provisioning_steps SET status = $3, outcome = $4, error = $5, finished_at = now() "
            "WHERE tenant_id = $1 AND step = $2",
            tenant_id, step, "failed" if error else "done", outcome, error,
        )

    async def finish(self, tenant_id: str, state: str, stage: str | None = None, error: str | None = None) -> None:
        """The final state of a run, in the handling transaction (commits with its event)."""
        await self._tx().execute(
            "UPDATE provisioned_tenants SET state = $2, failed_stage = $3, error = $4, updated_at = now() "
            "WHERE tenant_id = $1",
            tenant_id, state, stage, error,
        )
        if state == "deprovisioned":  # a re-creation starts from step one
            await self._tx().execute("DELETE FROM provisioning_steps WHERE tenant_id = $1", tenant_id)

    async def steps(self, tenant_id: str) -> dict[str, dict[str, Any]]:
        rows = await self.pool.fetch(
            "SELECT step, status, outcome, attempts, error FROM provisioning_steps WHERE tenant_id = $1", tenant_id
        )
        return {r["step"]: dict(r) for r in rows}

    async def state(self, tenant_id: str) -> str | None:
        return await self.pool.fetchval("SELECT state FROM provisioned_tenants WHERE tenant_id = $1", tenant_id)

    async def live_tenants(self) -> set[str]:
        return await live_tenants(self.pool)


async def live_tenants(db: Any) -> set[str]:
    """Tenants whose resources are wanted (see the module docstring); empty before the
    provisioner's first run created the table."""
    if not await db.fetchval("SELECT to_regclass('provisioned_tenants') IS NOT NULL"):
        return set()
    rows = await db.fetch("SELECT tenant_id FROM provisioned_tenants WHERE state = ANY($1::text[])", list(LIVE_STATES))
    return {r["tenant_id"] for r in rows}
