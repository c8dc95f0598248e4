"""Who emits and who consumes each event, read from the models' ClassVars.

The bus topology (one rule per consumer queue), the AsyncAPI document and the
status projection all derive from this one place, so adding a consumer is a
one-line change on the event model.
"""

from __future__ import annotations

import contracts.events_v1  # noqa: F401  (registers every event model)
import contracts.failures_v1  # noqa: F401
from contracts.envelope import Event
from contracts.registry import registered_events

# Control-plane services plus the reloader (data plane, produces only).
SERVICES = (
    "api",
    "provisioner",
    "builder",
    "migrator",
    "router-config",
    "deprovisioner",
    "reloader",
)


def _check(service: str) -> str:
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}; known: {', '.join(SERVICES)}")
    return service


def consumers_of(service: str) -> list[type[Event]]:
    """Event models the service's queue must receive (all registered majors)."""
    _check(service)
    return [e for e in registered_events() if service in e.consumers]


def producers_of(service: str) -> list[type[Event]]:
    """Event models the service may publish."""
    _check(service)
    return [e for e in registered_events() if service in e.producers]


def consumed_types(service: str) -> list[str]:
    """Distinct detail-types for the service's EventBridge rule, sorted."""
    return sorted({e.event_type for e in consumers_of(service)})


def event_types() -> list[str]:
    """Every registered detail-type, sorted."""
    return sorted({e.event_type for e in registered_events()})


KINDS = ("fact", "command")


def kind_of(event_type: str) -> str:
    """"fact" or "command" (the model's `kind`; every major of a type has the same)."""
    kinds = {e.kind for e in registered_events() if e.event_type == event_type}
    if len(kinds) != 1:
        raise ValueError(f"event type {event_type!r} has kinds {sorted(kinds)}")
    return kinds.pop()


def command_types() -> list[str]:
    """Every command's detail-type, sorted (the intents the API records)."""
    return sorted({e.event_type for e in registered_events() if e.kind == "command"})
