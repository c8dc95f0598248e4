"""The API's consumer: every event of every service feeds the status projection.

One handler for all types (the api queue receives them all, contracts.catalog): it
records the event in the event log if it came without an outbox (the reloader publishes
straight to the bus; `record_external` is a no-op for events already logged), finds the
request generation of its correlation id, and folds it into the tenant's status
(services.api.projection). It runs inside the inbox transaction, under the tenant's lock,
so duplicates are dropped by the inbox and replays are folded again harmlessly. An event
of an earlier incarnation of the tenant (deleted and created again since: events.recorded)
stays in the event log but changes neither the status nor the releases of the current one.
"""

from __future__ import annotations

from typing import Any

import structlog

from contracts.catalog import consumers_of
from contracts.envelope import Envelope
from events.inbox import current_connection
from events.recorded import stale_incarnation
from events.store import record_external
from services.api import releases, store
from services.api.projection import Observed, observe

log = structlog.get_logger(__name__)


async def on_event(envelope: Envelope[Any], deps: Any) -> list[Any]:
    conn = current_connection()
    if not await _logged(conn, envelope) and await record_external(conn, envelope):
        log.info("event.recorded_external", producer=envelope.producer)
    if current := await stale_incarnation(conn, envelope):
        log.warning("events.stale_incarnation", incarnation=str(envelope.incarnation or ""),
                    current_incarnation=str(current.id or ""))
        return []
    await project(conn, envelope)
    await releases.record(conn, envelope)
    await store.record_runtime(conn, envelope)
    return []


async def _logged(conn: Any, envelope: Envelope[Any]) -> bool:
    """Already in the event log? (Looking first spares every relay the insert's NOTIFY.)"""
    return bool(await conn.fetchval(
        "SELECT 1 FROM outbox WHERE event_id = $1 AND replay_id IS NOT DISTINCT FROM $2",
        envelope.event_id, envelope.replay_id,
    ))


async def project(conn: Any, envelope: Envelope[Any]) -> None:
    status = await store.load_status(conn, envelope.tenant_id)
    if status is None:  # not a tenant the API created (e.g. `hostplane demo`'s direct event)
        log.info("status.unknown_tenant")
        return
    generation = await store.generation_of(conn, envelope.tenant_id, envelope.correlation_id)
    seen = Observed(envelope.event_type, envelope.data.model_dump(mode="json"), generation, envelope.occurred_at)
    after = observe(status, seen)
    if after == status:
        log.info("status.unchanged", state=status.state)
        return
    await store.save_status(conn, after, event=(envelope.event_id, envelope.event_type, envelope.occurred_at))
    if (after.state, after.stage) != (status.state, status.stage):
        log.info("status.changed", before=status.state, state=after.state, stage=after.stage,
                 generation=after.generation)


HANDLERS = {model: on_event for model in consumers_of("api")}
