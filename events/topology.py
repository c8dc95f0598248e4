"""The one declaration of the messaging topology: bus, archive, per-service queues + DLQs,
and the rules routing event types to the queues that consume them.

`hostplane up` applies it to the emulator (events.topology_apply); the Pulumi platform
program reads the same declaration. Rule patterns use only `source` and `detail-type`
lists, the part both emulators match faithfully (DESIGN.md, Messaging rules). Events of
tenant runtimes come from `hostplane.runtime.<tenant_id>`, one source per tenant, so the
rules of their consumers and the archive match those with a `prefix` filter (both
emulators and AWS implement it); the consumer checks each event's exact source.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from contracts.catalog import SERVICES, consumed_types, consumers_of
from contracts.envelope import RUNTIME_PRODUCERS, RUNTIME_SOURCE_PREFIX, SOURCE_PREFIX

# Producers publishing under `hostplane.<service>`; the runtime's events match by prefix.
PRODUCERS = tuple(s for s in SERVICES if s not in RUNTIME_PRODUCERS)
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
    source_prefixes: tuple[str, ...] = ()

    def source_filter(self) -> list[Any]:
        return source_filter(self.sources, self.source_prefixes)

    def pattern(self) -> str:
        return json.dumps(
            {"source": self.source_filter(), "detail-type": list(self.detail_types)}, sort_keys=True
        )


@dataclass(frozen=True)
class Topology:
    bus_name: str
    archive_name: str
    queues: tuple[QueueSpec, ...]
    rules: tuple[RuleSpec, ...]
    sources: tuple[str, ...] = field(default=())
    source_prefixes: tuple[str, ...] = field(default=())

    def queue(self, service: str) -> QueueSpec:
        for q in self.queues:
            if q.service == service:
                return q
        raise KeyError(f"no queue for service {service!r}; known: {[q.service for q in self.queues]}")

    def archive_pattern(self) -> str:
        return json.dumps({"source": source_filter(self.sources, self.source_prefixes)}, sort_keys=True)


def source_filter(sources: tuple[str, ...], prefixes: tuple[str, ...]) -> list[Any]:
    """An EventBridge `source` list: exact sources, then `{"prefix": ...}` matchers."""
    return [*sources, *({"prefix": p} for p in prefixes)]


def _runtime_prefixes(service: str) -> tuple[str, ...]:
    """The runtime prefix when the service consumes an event a tenant runtime produces."""
    runtime = any(set(e.producers) & set(RUNTIME_PRODUCERS) for e in consumers_of(service))
    return (RUNTIME_SOURCE_PREFIX,) if runtime else ()


def topology(prefix: str = "hostplane") -> Topology:
    sources = tuple(SOURCE_PREFIX + p for p in PRODUCERS)
    queues = tuple(
        QueueSpec(service=s, name=f"{prefix}-{s}", dlq_name=f"{prefix}-{s}-dlq")
        for s in CONSUMER_SERVICES
    )
    rules = tuple(
        RuleSpec(name=f"{prefix}-to-{s}", service=s, detail_types=types, sources=sources,
                 source_prefixes=_runtime_prefixes(s))
        for s in CONSUMER_SERVICES
        if (types := tuple(consumed_types(s)))
    )
    return Topology(
        bus_name=prefix,
        archive_name=f"{prefix}-all-events",
        queues=queues,
        rules=rules,
        sources=sources,
        source_prefixes=(RUNTIME_SOURCE_PREFIX,),
    )
