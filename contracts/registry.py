"""Every event model, registered: the lookups that must see them all.

Each model registers itself in contracts.envelope when its module is imported; this module
imports them all, so whoever types an envelope's data (`parse_envelope`) or lists the
catalog (`registered_events`) finds every model, and contracts.envelope itself imports no
model (a tenant's runtime loads neither).
"""

from __future__ import annotations

import json
from typing import Any

import contracts.events_v1  # noqa: F401  (registers its models)
import contracts.failures_v1  # noqa: F401  (registers its models)
from contracts.envelope import _REGISTRY, Envelope, Event, UnknownEvent


def registered_events() -> list[type[Event]]:
    """All registered event models, sorted by type then version."""
    return sorted(_REGISTRY.values(), key=lambda c: (c.event_type, c.major()))


def event_model(event_type: str, schema_version: str) -> type[Event]:
    try:
        return _REGISTRY[(event_type, int(schema_version.split(".")[0]))]
    except (KeyError, ValueError):
        raise UnknownEvent(f"no model for event {event_type} version {schema_version}") from None


def parse_envelope(detail: str | bytes | dict[str, Any]) -> Envelope[Any]:
    """Read an envelope and type its `data` with the registered model."""
    obj = json.loads(detail) if isinstance(detail, (str, bytes)) else detail
    head = Envelope[Event].model_validate(obj)
    model = event_model(head.event_type, head.schema_version)
    return Envelope[model].model_validate(obj)  # type: ignore[valid-type]
