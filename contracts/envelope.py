"""The one event envelope (EventBridge `detail`) and the registry of event models.

Every event payload is an `Event` subclass registered under its type and version.
Readers tolerate unknown fields (a newer minor version may add optional ones) and
look models up by (type, major), so a 1.3 event is read by the 1.x model.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from contracts.tenant import TenantId

SOURCE_PREFIX = "hostplane."
# Producers that run inside a tenant's runtime (data plane): they speak on the bus only
# under an identity bound to their own tenant, `hostplane.runtime.<tenant_id>`.
RUNTIME_PRODUCERS = ("reloader",)
RUNTIME_SOURCE_PREFIX = SOURCE_PREFIX + "runtime."
VERSION_PATTERN = r"^[0-9]+\.[0-9]+$"


class Event(BaseModel):
    """Base of every event payload. Subclasses set `event_type` and `schema_version`."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_type: ClassVar[str]
    schema_version: ClassVar[str]
    # Services that emit / consume this event: the AsyncAPI document, the status
    # projection and the bus topology (rules per consumer queue) derive from these.
    producers: ClassVar[tuple[str, ...]] = ()
    consumers: ClassVar[tuple[str, ...]] = ()
    # "command": someone wants something (an intent the API recorded; replaying one that is
    # no longer the tenant's latest intent changes nothing); "fact": something happened
    # (replaying one re-derives projections, never an older desired state). docs/replay.md.
    kind: ClassVar[str]
    # False for runtime facts the host states about a tenant (its sleep and wake): the
    # runtime's own reports and its AWS task role may not carry them (a tenant could
    # otherwise say it sleeps while it serves); the host's agent or activator publishes them.
    tenant_may_report: ClassVar[bool] = True

    @classmethod
    def major(cls) -> int:
        return int(cls.schema_version.split(".")[0])


E = TypeVar("E", bound=Event)

_REGISTRY: dict[tuple[str, int], type[Event]] = {}


class UnknownEvent(ValueError):
    """An envelope whose type or major version no model is registered for."""


def register(cls: type[E]) -> type[E]:
    key = (cls.event_type, cls.major())
    if key in _REGISTRY and _REGISTRY[key] is not cls:
        raise ValueError(f"event {key} registered twice")
    _REGISTRY[key] = cls
    return cls


def runtime_source(tenant_id: str) -> str:
    """EventBridge `source` of every event a tenant's runtime publishes about itself."""
    return RUNTIME_SOURCE_PREFIX + tenant_id


def producer_source(producer: str, tenant_id: str) -> str:
    """EventBridge `source` a producer speaks under: `hostplane.<service>` for the control
    plane, `hostplane.runtime.<tenant_id>` for a tenant runtime."""
    return runtime_source(tenant_id) if producer in RUNTIME_PRODUCERS else SOURCE_PREFIX + producer


def declared_sources(model: type[Event], tenant_id: str) -> set[str]:
    """Every `source` an event of `model` about `tenant_id` may come from (its declared producers)."""
    return {producer_source(p, tenant_id) for p in model.producers}


class Envelope(BaseModel, Generic[E]):
    """What travels on the bus. `correlation_id` is one per user request, carried
    through every stage; `causation_id` is the event that caused this one;
    `replay_id` marks an ops replay (the same event re-published on purpose).
    `incarnation` names the tenant incarnation the event belongs to (set by the API when
    it accepts a create, carried from cause to effect); a tenant deleted and created again
    is a new incarnation, and stage services change nothing for an old one. Events from
    before the field existed have none (readers then compare `occurred_at`)."""

    model_config = ConfigDict(frozen=True)

    event_id: uuid.UUID
    event_type: str
    schema_version: str = Field(pattern=VERSION_PATTERN)
    occurred_at: AwareDatetime
    tenant_id: TenantId
    correlation_id: uuid.UUID
    causation_id: uuid.UUID | None = None
    producer: str = Field(pattern=r"^[a-z][a-z0-9-]{1,40}$")
    replay_id: uuid.UUID | None = None
    incarnation: uuid.UUID | None = None
    data: E

    @classmethod
    def new(
        cls,
        data: Event,
        *,
        tenant_id: str,
        producer: str,
        correlation_id: uuid.UUID | None = None,
        cause: Envelope[Any] | None = None,
        incarnation: uuid.UUID | None = None,
    ) -> Envelope[Any]:
        """Wrap a payload. With `cause`, correlation, incarnation and replay mark are
        carried and causation set: what a replay causes is replay output, never history
        a later replay re-publishes (events.replay)."""
        replay_id = None
        if cause is not None:
            correlation_id = cause.correlation_id
            incarnation = incarnation or cause.incarnation
            replay_id = cause.replay_id
        return Envelope[type(data)](  # type: ignore[misc]
            event_id=uuid.uuid4(),
            event_type=data.event_type,
            schema_version=data.schema_version,
            occurred_at=datetime.now(UTC),
            tenant_id=tenant_id,
            correlation_id=correlation_id or uuid.uuid4(),
            causation_id=cause.event_id if cause is not None else None,
            producer=producer,
            replay_id=replay_id,
            incarnation=incarnation,
            data=data,
        )

    @property
    def source(self) -> str:
        """EventBridge `source`: `hostplane.<producer>`, or for a tenant runtime's events
        `hostplane.runtime.<tenant_id>` (the identity its credentials may publish under)."""
        return producer_source(self.producer, self.tenant_id)

    @property
    def dedup_key(self) -> str:
        """Inbox key: a replay is a new delivery on purpose, its duplicates are not."""
        return f"{self.event_id}:{self.replay_id or ''}"

    def as_replay(self) -> Envelope[Any]:
        return self.model_copy(update={"replay_id": uuid.uuid4()})

    def to_detail(self) -> str:
        return self.model_dump_json()
