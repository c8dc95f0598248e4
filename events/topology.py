"""The one declaration of the messaging topology: bus, archive, per-service queues + DLQs,
and the rules routing event types to the queues that consume them.

`hostplane up` applies it to the emulator (events.topology_apply); the Pulumi platform
program reads the same declaration. Rule patterns use only `source` and `detail-type`
lists, the part both emulators match faithfully (DESIGN.md, Messaging rules).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from contracts.catalog import SERVICES, consumed_types
from contracts.envelope import SOURCE_PREFIX

PRODUCERS = SERVICES
# Every service that consumes gets a queue, even before its first event type exists.
CONSUMER_SERVICES = tuple(s for s in SERVICES if s != "reloader")
MAX_RECEIVES = 5
VISIBILITY_TIMEOUT_S = 60
QUEUE_RETENTION_S = 4 * 24 * 3600
DLQ_RETENTION_S = 14 * 24 * 3600  # longer than the source queue's, so nothing ages out first
ARCHIVE_RETENTION_DAYS = 30


@dataclass(frozen=True)
class QueueSpec:
    service: str
    name: str
    dlq_name: str
    max_receives: int = MAX_RECEIVES
    visibility_timeout_s: int = VISIBILITY_TIMEOUT_S
    retention_s: int = QUEUE_RETENTION_S
    dlq_retention_s: int = DLQ_RETENTION_S


@dataclass(frozen=True)
class RuleSpec:
    name: str
    service: str
    detail_types: tuple[str, ...]
    sources: tuple[str, ...]

    def pattern(self) -> str:
        return json.dumps(
            {"source": list(self.sources), "detail-type": list(self.detail_types)}, sort_keys=True
        )


@dataclass(frozen=True)
class Topology:
    bus_name: str
    archive_name: str
    queues: tuple[QueueSpec, ...]
    rules: tuple[RuleSpec, ...]
    sources: tuple[str, ...] = field(default=())

    def queue(self, service: str) -> QueueSpec:
        for q in self.queues:
            if q.service == service:
                return q
        raise KeyError(f"no queue for service {service!r}; known: {[q.service for q in self.queues]}")

    def archive_pattern(self) -> str:
        return json.dumps({"source": list(self.sources)}, sort_keys=True)


def topology(prefix: str = "hostplane") -> Topology:
    sources = tuple(SOURCE_PREFIX + p for p in PRODUCERS)
    queues = tuple(
        QueueSpec(service=s, name=f"{prefix}-{s}", dlq_name=f"{prefix}-{s}-dlq")
        for s in CONSUMER_SERVICES
    )
    rules = tuple(
        RuleSpec(name=f"{prefix}-to-{s}", service=s, detail_types=types, sources=sources)
        for s in CONSUMER_SERVICES
        if (types := tuple(consumed_types(s)))
    )
    return Topology(
        bus_name=prefix,
        archive_name=f"{prefix}-all-events",
        queues=queues,
        rules=rules,
        sources=sources,
    )
