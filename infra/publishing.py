"""Who may say what on the platform bus, as IAM sees it: the `events:PutEvents` conditions
of every task role, derived from the catalog's declared producers (contracts.catalog).

Consumers trust an event's EventBridge `source` (events.consumer's producer check), so
no role may publish a source that is not its own:

- a tenant runtime (infra/tenant/runtime.py): only `hostplane.runtime.<tenant>` and only
  the types a runtime reports itself (ReleaseActivated, ReleaseFailed, AppCrashed today;
  never RuntimeSlept/RuntimeWoke, which the host states: Event.tenant_may_report);
- a control-plane service (infra/platform/permissions.py): only `hostplane.<service>` and
  the types it produces. Replays keep their original source, so each service's relay
  republishes its own (events.outbox.relay_sources); the API also republishes replays of
  runtime events (`hostplane.runtime.*`), which no control-plane service produces.

The condition keys, as AWS documents them (Service Authorization Reference, EventBridge;
the EventBridge user guide's "Using IAM policy conditions"): PutEvents takes
`events:source` (ArrayOfString), `events:detail-type` (String) and
`events:eventBusInvocation`. EventBridge authorizes each entry of a call on its own: an
entry outside the grant fails alone with `NotAuthorizedForSourceException` or
`NotAuthorizedForDetailTypeException` (PutEventsResultEntry). `events:source` being
multivalued, it is tested with `ForAllValues:` plus `Null: false` (AWS's own example for
multivalued keys: ForAllValues alone also holds when the key is absent).
"""

from __future__ import annotations

from typing import Any

from contracts.catalog import SERVICES, producers_of
from contracts.envelope import RUNTIME_PRODUCERS, RUNTIME_SOURCE_PREFIX, runtime_source

CONTROL_PLANE = tuple(s for s in SERVICES if s not in RUNTIME_PRODUCERS)


def produced_types(*producers: str) -> list[str]:
    """Every detail-type the producers are declared for, sorted."""
    return sorted({e.event_type for p in producers for e in producers_of(p)})


# What a tenant's runtime may report itself: not its sleep and wake, which the host states
# (contracts.envelope.Event.tenant_may_report; docs/scale-to-zero.md: the activator's role).
RUNTIME_EVENT_TYPES: tuple[str, ...] = tuple(sorted(
    {e.event_type for p in RUNTIME_PRODUCERS for e in producers_of(p) if e.tenant_may_report}))


def put_events_condition(sources: list[str], detail_types: list[str]) -> dict[str, Any]:
    """Every entry's source in `sources` (`*` wildcards allowed) and detail-type in
    `detail_types`; neither may be absent."""
    match = "StringLike" if any("*" in s for s in sources) else "StringEquals"
    return {
        f"ForAllValues:{match}": {"events:source": sources},
        "StringEquals": {"events:detail-type": detail_types},
        "Null": {"events:source": "false", "events:detail-type": "false"},
    }


def tenant_publishing(tenant_id: str) -> dict[str, Any]:
    """The tenant task role's PutEvents condition."""
    return put_events_condition([runtime_source(tenant_id)], list(RUNTIME_EVENT_TYPES))


def service_publishing(service: str) -> list[dict[str, Any]]:
    """A control-plane role's PutEvents conditions, one per statement: the sources its relay
    claims (events.outbox.relay_sources, LIKE `%` read as IAM's `*`), each with only the
    types that source carries (the API's runtime replays apart from its own events, so it
    cannot put its own types under a runtime source, nor the reverse)."""
    from events.outbox import relay_sources

    out = []
    for pattern in relay_sources(service):
        source = pattern.replace("%", "*")
        runtime = source.startswith(RUNTIME_SOURCE_PREFIX)
        out.append(put_events_condition([source], produced_types(*(RUNTIME_PRODUCERS if runtime else [service]))))
    return out
