"""Version 1 of the failure events: how a stage tells the status projection it gave up.

Every control-plane service declares one *Failed event (`SERVICE_FAILURES`), which its
consumer publishes when a handler raises PermanentFailure (events.failure); the reloader
reports ReleaseFailed; any consuming service that dead-letters a message says so with
MessageDeadLettered. Same versioning rules as events_v1.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from contracts.envelope import Event, register
from contracts.events_v1 import EVERYONE_WATCHING, V1
from contracts.fields import Code, ErrorMessage, HostName, LogLines, NonNegativeInt, ReleaseVersion, ResourceRef, Sha256


class Failure(Event):
    """Common shape of the `...Failed` events, so the status projection shows
    every failure the same way: which lifecycle stage, which step, what error,
    and whether redelivery may succeed (retryable) or a person must act."""

    lifecycle_stage: ClassVar[str]

    stage: Code = Field(description="Step of this service's work that failed, e.g. 'database'")
    error: ErrorMessage
    retryable: bool


@register
class ProvisioningFailed(Failure):
    """Provisioning stopped; resources created so far stay for a retry or teardown."""

    event_type = "ProvisioningFailed"
    schema_version = V1
    producers = ("provisioner",)
    kind = "fact"
    consumers = EVERYONE_WATCHING
    lifecycle_stage = "provisioning"


@register
class BuildFailed(Failure):
    """The spec could not be generated, compiled or published; nothing changed."""

    event_type = "BuildFailed"
    schema_version = V1
    producers = ("builder",)
    kind = "fact"
    consumers = EVERYONE_WATCHING
    lifecycle_stage = "building"

    spec_sha256: Sha256


@register
class MigrationFailed(Failure):
    """Migrations for `version` failed and were rolled back; the old release serves."""

    event_type = "MigrationFailed"
    schema_version = V1
    producers = ("migrator",)
    kind = "fact"
    consumers = EVERYONE_WATCHING
    lifecycle_stage = "migrating"

    version: ReleaseVersion


@register
class RouteFailed(Failure):
    """Router-config cannot route the tenant, and redelivery would not change that: a host it
    was asked for is routed to another live tenant (`stage` 'hosts'). The tenant shows failed
    at routing until a later RouteConfigured of its request supersedes it."""

    event_type = "RouteFailed"
    schema_version = V1
    producers = ("router-config",)
    kind = "fact"
    consumers = EVERYONE_WATCHING
    lifecycle_stage = "routing"

    hosts: list[HostName] = Field(default_factory=list, description="The hosts it was asked to route")


@register
class ReleaseFailed(Failure):
    """A release was refused before it received traffic (start, health, digest), or was
    taken out of service after crashing in a loop; the last good release serves."""

    event_type = "ReleaseFailed"
    schema_version = V1
    producers = ("reloader",)
    kind = "fact"
    consumers = EVERYONE_WATCHING
    lifecycle_stage = "releasing"

    version: ReleaseVersion
    reason: Code = Field(description="e.g. 'health_check', 'crash_loop', 'digest_mismatch'")
    last_log_lines: LogLines = Field(default_factory=list)


@register
class DeprovisioningFailed(Failure):
    """Teardown stopped; `remaining` lists what still exists, for the next attempt."""

    event_type = "DeprovisioningFailed"
    schema_version = V1
    producers = ("deprovisioner",)
    kind = "fact"
    consumers = EVERYONE_WATCHING
    lifecycle_stage = "deprovisioning"

    remaining: list[ResourceRef] = Field(default_factory=list)


# Lifecycle stage each consuming service's failures belong to (the status projection's
# `failed` stage when that service gives up on a message).
SERVICE_STAGES = {"provisioner": "provisioning", "builder": "building", "migrator": "migrating",
                  "router-config": "routing", "deprovisioner": "deprovisioning"}


@register
class MessageDeadLettered(Event):
    """A service failed an event on its last receive: the message now waits in that
    service's DLQ (`hostplane dlq list`) until it is redriven. Tells the status projection
    the tenant is stuck at `stage`; a later success of that stage supersedes it."""

    event_type = "MessageDeadLettered"
    schema_version = V1
    producers = tuple(SERVICE_STAGES)
    kind = "fact"
    consumers = EVERYONE_WATCHING

    service: Code = Field(description="The consuming service that gave up")
    stage: Code = Field(description="Lifecycle stage of that service, e.g. 'provisioning'")
    failed_event_type: str = Field(pattern=r"^[A-Z][A-Za-z0-9]{0,63}$", description="Type of the event that kept failing")
    failed_event_id: str = Field(min_length=1, max_length=64, description="Its envelope event_id")
    receives: NonNegativeInt
    error: ErrorMessage


FAILURES: tuple[type[Failure], ...] = (
    ProvisioningFailed,
    BuildFailed,
    MigrationFailed,
    RouteFailed,
    ReleaseFailed,
    DeprovisioningFailed,
)


# What each control-plane service publishes when its handler raises PermanentFailure
# (events.failure): one declared *Failed event per service.
SERVICE_FAILURES: dict[str, type[Failure]] = {
    "provisioner": ProvisioningFailed, "builder": BuildFailed, "migrator": MigrationFailed,
    "router-config": RouteFailed, "deprovisioner": DeprovisioningFailed,
}
