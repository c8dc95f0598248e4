"""What the API recorded, for the stage services to check before they act (read-only).

The API is the only entry point: it writes, in the transaction that accepts a request
(services.api.commands), the tenant's *incarnation* (`tenants.incarnation`, a fresh id at
every create, so a tenant deleted and created again is a new one, and `created_at`) and
one `tenant_requests` row per request with the command's event id and payload. Nothing
else writes them, and a tenant cannot: so a command is honoured only as recorded there,
and an event is acted on only for the incarnation it belongs to.

- `stale_incarnation`: the event belongs to another incarnation than the tenant's
  current one (events without the field, from before it existed, are compared by
  `occurred_at` with the incarnation's creation). The consumer asks this for every stage
  service before the handler runs (events.consumer).
- `unrecorded`: why a command (or a fact that carries one on, like TenantProvisioned
  carrying the create's spec) is not exactly what the API recorded for that tenant. The
  consumer asks it for every command (an event the API produces) before a stage service
  acts on it; the builder and migrator also for the facts that carry a command's fields.
- `superseded`: a newer request replaced the one this command carries out (it is no
  longer the tenant's latest intent), so replaying it changes nothing.
- `replay_superseded`: the same for a *replayed* command, per request kind (SUPERSEDED_BY);
  the consumer asks it for every stage service (docs/replay.md).
- `deletion_requested_since`: the tenant's deletion was requested after the request this
  event carries out; the consumer lets only the deletion's own events act then, so a create
  that finishes late routes, builds and migrates nothing that is being torn down.

A tenant the API never recorded (`hostplane demo`, handlers driven directly in tests, a
stage service without the API's tables) has nothing to compare: both checks pass.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from contracts.envelope import Envelope

# The request kinds whose command a stage service carries out, by the event it acts on.
KIND_OF = {"TenantRequested": "create", "TenantProvisioned": "create", "AppUpdateRequested": "update",
           "RollbackRequested": "rollback", "TenantDeletionRequested": "delete",
           "DomainChangeRequested": "domain", "IdleAfterChangeRequested": "idle", "TenantChanged": None}


@dataclass(frozen=True)
class Incarnation:
    id: uuid.UUID | None  # None: a tenant recorded before incarnations existed
    created_at: datetime


@dataclass(frozen=True)
class RecordedRequest:
    kind: str
    generation: int
    event_id: uuid.UUID | None  # None: recorded before commands were (history)
    spec_sha256: str | None
    command: dict[str, Any] | None
    incarnation: uuid.UUID | None


async def _has_tables(db: Any) -> bool:
    return bool(await db.fetchval("SELECT to_regclass('tenants') IS NOT NULL AND "
                                  "to_regclass('tenant_requests') IS NOT NULL"))


async def current_incarnation(db: Any, tenant_id: str) -> Incarnation | None:
    """The tenant's current incarnation; None when the API never recorded the tenant."""
    if not await _has_tables(db):
        return None
    row = await db.fetchrow("SELECT * FROM tenants WHERE tenant_id = $1", tenant_id)
    if row is None:
        return None
    return Incarnation(row.get("incarnation"), row["created_at"])


def is_stale(envelope: Envelope[Any], current: Incarnation | None) -> bool:
    """Does the event belong to another incarnation than `current`?"""
    if current is None:
        return False
    if envelope.incarnation is not None and current.id is not None:
        return envelope.incarnation != current.id
    return envelope.occurred_at < current.created_at


async def stale_incarnation(db: Any, envelope: Envelope[Any]) -> Incarnation | None:
    """The tenant's current incarnation when the event belongs to another one, else None."""
    current = await current_incarnation(db, envelope.tenant_id)
    return current if is_stale(envelope, current) else None


async def recorded_request(db: Any, tenant_id: str, correlation_id: uuid.UUID) -> RecordedRequest | None:
    row = await db.fetchrow("SELECT * FROM tenant_requests WHERE tenant_id = $1 AND correlation_id = $2",
                            tenant_id, correlation_id)
    if row is None:
        return None
    command = row.get("command")
    return RecordedRequest(row["kind"], row["generation"], row.get("event_id"), row["spec_sha256"],
                           json.loads(command) if isinstance(command, str) else command, row.get("incarnation"))


# Asked of a request recorded before commands were (no payload kept): refused, since
# nothing vouches for it.
_UNVOUCHED = ("allow_destructive", "source_ref", "static_ref", "to_version")


async def unrecorded(db: Any, envelope: Envelope[Any], fields: tuple[str, ...] | None = None) -> str | None:
    """Why the API did not record this command for this tenant (None: it did, exactly).

    The request is the one of the envelope's correlation id (every stage carries it);
    it must be of the kind the event carries out; a command published by the API itself
    must be the very event the API recorded; each of `fields` (None: every field of the
    payload) must equal the recorded command's. A request recorded before commands were
    (no payload kept) vouches for its spec digest only: anything else asked of it is refused."""
    if not await _has_tables(db) or not await db.fetchval(
            "SELECT 1 FROM tenants WHERE tenant_id = $1", envelope.tenant_id):
        return None
    request = await recorded_request(db, envelope.tenant_id, envelope.correlation_id)
    if request is None:
        return "the API recorded no request with this correlation id for this tenant"
    kind = KIND_OF.get(envelope.event_type)
    if kind is not None and request.kind != kind:
        return f"the recorded request is a {request.kind}, not a {kind}"
    if envelope.producer == "api" and request.event_id is not None and request.event_id != envelope.event_id:
        return "the API recorded another event for this request"
    model = type(envelope.data)
    data = envelope.data.model_dump(mode="json")
    names = tuple(model.model_fields) if fields is None else fields
    if request.command is None:  # history: only the digest was kept
        if "spec_sha256" in names and "spec_sha256" in data and data["spec_sha256"] != request.spec_sha256:
            return "spec_sha256 differs from the recorded request"
        if unvouched := [f for f in names if f in _UNVOUCHED and data.get(f)]:
            return f"{unvouched[0]} was not recorded with this request"
        return None
    command = request.command
    if envelope.producer == "api":  # the very command: read the record with the same model
        try:
            command = model.model_validate(command).model_dump(mode="json")
        except ValueError:
            return f"the recorded request is not a {envelope.event_type}"
    for field in names:
        if data.get(field) != command.get(field):
            return f"{field} differs from the recorded request"
    return None


# Requests that change what the tenant runs: a newer one supersedes an older build command.
BUILD_KINDS = ("create", "update", "rollback", "delete")


async def superseded(db: Any, envelope: Envelope[Any], kinds: tuple[str, ...] = BUILD_KINDS) -> str | None:
    """The kind of a newer request (of `kinds`) that replaces the one this event carries out
    (its correlation id's), or None while it is still the tenant's latest intent. A replayed
    or late command that is no longer the latest changes nothing (DESIGN.md, Replay semantics)."""
    if not await _has_tables(db):
        return None
    return await _newer_request(db, envelope, kinds)


# What a replayed command yields to: the request kinds that, accepted after it, make it no
# longer the tenant's latest intent. A newer create is another incarnation (skipped before).
SUPERSEDED_BY = {
    "create": ("create", "update", "rollback", "delete", "domain", "idle"),  # the tenant has moved on
    "update": BUILD_KINDS,
    "rollback": BUILD_KINDS,
    "domain": ("create", "domain", "delete"),
    "idle": ("create", "idle", "delete"),
    "delete": ("create",),
}


async def replay_superseded(db: Any, envelope: Envelope[Any]) -> str | None:
    """For a replayed command (replay_id set): the kind of a newer request that makes it no
    longer the tenant's latest intent, or None. Replays only: a late first delivery of a
    create overtaken by an update must still provision (the builder checks `superseded`)."""
    kind = KIND_OF.get(envelope.event_type)
    if envelope.replay_id is None or kind is None or not await _has_tables(db):
        return None
    return await _newer_request(db, envelope, SUPERSEDED_BY[kind])


async def deletion_requested_since(db: Any, envelope: Envelope[Any]) -> bool:
    """Was the tenant's deletion requested after the request `envelope` carries out (its
    correlation id's)? Live deliveries too: a create still provisioning when the delete came
    finishes with a TenantProvisioned that must not route the tenant again (the
    deprovisioner would wait forever for its traffic to stop)."""
    if not await _has_tables(db):
        return False
    return await _newer_request(db, envelope, ("delete",)) is not None


async def _newer_request(db: Any, envelope: Envelope[Any], kinds: tuple[str, ...]) -> str | None:
    """The kind of the newest request of `kinds` accepted after the one whose correlation id
    `envelope` carries, or None."""
    return await db.fetchval(
        "SELECT newer.kind FROM tenant_requests this JOIN tenant_requests newer "
        "ON newer.tenant_id = this.tenant_id AND newer.generation > this.generation "
        "WHERE this.tenant_id = $1 AND this.correlation_id = $2 AND newer.kind = ANY($3::text[]) "
        "ORDER BY newer.generation DESC LIMIT 1",
        envelope.tenant_id, envelope.correlation_id, list(kinds))


class RecordedRequests:
    """`unrecorded` for a service's deps: in the handling transaction when there is one."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    async def unrecorded(self, envelope: Envelope[Any], fields: tuple[str, ...]) -> str | None:
        from events.inbox import current_connection

        conn = current_connection()
        if conn is not None:
            return await unrecorded(conn, envelope, fields)
        async with self.pool.acquire() as own:
            return await unrecorded(own, envelope, fields)

    async def superseded(self, envelope: Envelope[Any], kinds: tuple[str, ...] = BUILD_KINDS) -> str | None:
        from events.inbox import current_connection

        conn = current_connection()
        if conn is not None:
            return await superseded(conn, envelope, kinds)
        async with self.pool.acquire() as own:
            return await superseded(own, envelope, kinds)
