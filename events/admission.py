"""What an event must pass before a service's handler sees it (events.consumer runs these).

- `check_producer`: its EventBridge `source` is the source of a declared producer of its
  type, and the envelope names that producer and tenant (refused otherwise: deleted,
  counted, logged, nothing else).
- `skip_reason`, for the services that act on a tenant's resources, inside the handling
  transaction: an event of another incarnation of its tenant (`stale`), a command the API
  did not record exactly so (`unrecorded`), an event of a request the tenant's deletion came
  after (`tenant_deleted`), a replayed command a newer request replaced (`superseded`).
  Such an event is marked handled and changes nothing (events.recorded).
"""

from __future__ import annotations

from typing import Any

import structlog

from contracts.envelope import Envelope, Event, declared_sources, producer_source
from events import recorded

log = structlog.get_logger(__name__)

class EventRefused(Exception):
    """The event is not from a declared producer of its type: delete it, nothing else."""

    def __init__(self, event_type: str, source: Any, tenant_id: Any, reason: str) -> None:
        super().__init__(reason)
        self.event_type, self.source, self.tenant_id, self.reason = event_type, source, tenant_id, reason


# Services that act on a tenant's resources: each event is checked against the tenant's
# current incarnation first (the API's projection folds every event and keeps its own order).
INCARNATION_CHECKED = ("provisioner", "builder", "migrator", "router-config", "deprovisioner")
# Producers of commands: a stage service carries one out only as the API recorded it.
COMMAND_PRODUCERS = ("api",)


def check_producer(model: type[Event], source: Any, detail: dict[str, Any]) -> None:
    """Raise EventRefused unless `source` (EventBridge's, set by whoever called PutEvents and
    bound to its credentials) is the source of a declared producer of `model`, and the
    envelope names that same producer and tenant: a runtime event about tenant X must come
    from `hostplane.runtime.X`. Ops replays re-publish under the original source."""
    event_type, tenant, producer = model.event_type, detail.get("tenant_id"), detail.get("producer")
    if not isinstance(source, str) or not isinstance(tenant, str) or not isinstance(producer, str):
        raise EventRefused(event_type, source, tenant, "no source, tenant or producer")
    if producer not in model.producers:
        raise EventRefused(event_type, source, tenant, f"producer {producer!r} is not declared for {event_type}")
    if source not in declared_sources(model, tenant):
        raise EventRefused(event_type, source, tenant, f"source is not a declared producer of {event_type}")
    if source != producer_source(producer, tenant):
        raise EventRefused(event_type, source, tenant, f"source does not match the envelope's producer {producer!r}")


async def skip_reason(service: str, conn: Any, envelope: Envelope[Any]) -> str | None:
    """Why `service` must not act on `envelope` (None: it may); `conn`: the handling
    transaction's connection (None outside one: nothing to check against)."""
    if service not in INCARNATION_CHECKED or conn is None:
        return None
    if await _stale(conn, envelope):
        return "stale"
    if envelope.producer in COMMAND_PRODUCERS and await _unrecorded(conn, envelope):
        return "unrecorded"
    if await recorded.deletion_requested_since(conn, envelope):
        log.warning("events.tenant_deleted", reason="the tenant's deletion was requested after this event's request")
        return "tenant_deleted"
    if await _replay_superseded(conn, envelope):
        return "superseded"
    return None


async def _stale(conn: Any, envelope: Envelope[Any]) -> bool:
    """Is the event of another incarnation of its tenant than the current one? (Read in
    the handling transaction; the API commits a re-creation before its first event.)"""
    current = await recorded.stale_incarnation(conn, envelope)
    if current is None:
        return False
    log.warning("events.stale_incarnation", incarnation=str(envelope.incarnation or ""),
                current_incarnation=str(current.id or ""), occurred_at=envelope.occurred_at.isoformat(),
                created_at=current.created_at.isoformat())
    return True


async def _unrecorded(conn: Any, envelope: Envelope[Any]) -> bool:
    """Is this a command (an event the API produces) that the API did not record exactly
    so for the tenant? A stage service then changes nothing (events.recorded)."""
    reason = await recorded.unrecorded(conn, envelope)
    if reason is None:
        return False
    log.warning("command.unrecorded", producer=envelope.producer, reason=reason)
    return True


async def _replay_superseded(conn: Any, envelope: Envelope[Any]) -> bool:
    """Is this a replayed command that is no longer the tenant's latest intent? A stage
    service then changes nothing (docs/replay.md)."""
    if envelope.replay_id is None or getattr(type(envelope.data), "kind", None) != "command":
        return False
    newer = await recorded.replay_superseded(conn, envelope)
    if newer is None:
        return False
    log.info("command.superseded", by=newer, reason="a replayed command a newer request replaced")
    return True
