"""The status projection: what state a tenant is in, derived from the events seen so far.

Users see `requested → provisioning → building → migrating → ready`, `updating`,
`failed` (stage + error), `deleting → deleted`. Events arrive at least once and in any
order, so the state is never *moved* by an event; it is *derived* from facts that only
accumulate:

- Every request the API accepts gets the next per-tenant **generation** (create, update
  and delete alike), recorded with its correlation id. An event belongs to the
  generation of its correlation id; an unknown correlation counts as the current one.
- A create starts a new **lifetime**: events of an older lifetime are ignored, and once
  a delete is requested nothing older than it is applied (a late TenantProvisioned never
  resurrects a tenant).
- Facts are grow-only: flags set once, versions kept at their maximum. Facts about the
  tenant's resources (provisioned, routed, migrated/active versions) are taken from any
  generation of the lifetime; facts about a request (its event published, the version
  it built, its failure) only from that request's generation.
- A failure counts only while nothing shows its stage succeeded in the same generation
  (a retried step that succeeds supersedes it, a late duplicate failure changes nothing).
- The state is the first unmet requirement of the request's pipeline, where later facts
  imply earlier ones (an active release implies a built one). Adding facts can only
  satisfy requirements, so the derived state never moves backwards, and any order of
  the same events yields the same state.

Pure functions only: `begin` (the API accepted a request) and `observe` (an event was
consumed) return a new `Status`; handlers load and store it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from contracts.tenant import TERMINAL
from contracts.failures_v1 import FAILURES

Kind = Literal["create", "update", "delete", "domain", "rollback", "idle"]
# Who the tenant is waiting for at each stage (honest while a service does not exist yet).
WAITING_FOR = {"queued": "api", "provision": "provisioner", "route": "router-config", "build": "builder",
               "migrate": "migrator", "release": "reloader", "deprovision": "deprovisioner",
               "settings": "provisioner"}
_FAILURE_STAGES = {cls.event_type: cls.lifecycle_stage for cls in FAILURES}


@dataclass(frozen=True)
class FailureFact:
    stage: str  # lifecycle stage: provisioning, building, migrating, releasing, deprovisioning
    step: str  # the service's step, e.g. 'database'
    error: str
    retryable: bool
    at: str
    version: int | None = None


@dataclass(frozen=True)
class Facts:
    published: bool = False  # the request's own event came back from the bus
    provisioned: bool = False
    routed: bool = False
    built_version: int | None = None  # the release this request built
    migrated_version: int | None = None
    active_version: int | None = None
    route_removed: bool = False
    deprovisioned: bool = False
    failure: FailureFact | None = None
    route_current: bool = False  # a RouteConfigured of this request's generation (a domain change's end)
    idle_current: bool = False  # an IdleAfterChanged of this request's generation (an idle change's end)
    # From the latest RouteConfigured: a custom domain the edge cannot serve yet, and the
    # DNS records its owner publishes (AWS: certificate validation, the CNAME to the edge).
    pending_domain: str | None = None
    dns_records: list[dict[str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Facts:
        failure = data.get("failure")
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "failure"}
        return cls(**known, failure=FailureFact(**failure) if failure else None)


@dataclass(frozen=True)
class Status:
    tenant_id: str
    generation: int
    lifetime: int
    kind: Kind
    facts: Facts = field(default_factory=Facts)

    @property
    def state(self) -> str:
        return derive(self.kind, self.facts)[0]

    @property
    def stage(self) -> str | None:
        return derive(self.kind, self.facts)[1]

    @property
    def version(self) -> int | None:
        return self.facts.active_version

    @property
    def settled(self) -> bool:
        return self.state in TERMINAL[self.kind]


@dataclass(frozen=True)
class Observed:
    """One consumed event, reduced to what the projection reads."""

    event_type: str
    data: dict[str, Any]
    generation: int | None  # of its correlation id; None when the API never issued it
    occurred_at: datetime


def begin(previous: Status | None, tenant_id: str, generation: int, kind: Kind) -> Status:
    """The API accepted request `generation`: request facts start afresh; a create also
    starts a new lifetime (nothing from an earlier one counts)."""
    if kind == "create" or previous is None:
        return Status(tenant_id, generation, generation, kind)
    keep = replace(previous.facts, published=False, built_version=None, failure=None, route_current=False,
                   idle_current=False)
    return Status(tenant_id, generation, previous.lifetime, kind, keep)


def observe(status: Status, event: Observed) -> Status:
    gen = status.generation if event.generation is None else event.generation
    if gen < status.lifetime or (status.kind == "delete" and gen < status.generation):
        return status  # another lifetime, or overtaken by a deletion: never resurrect
    current = gen >= status.generation
    facts = status.facts
    data, etype = event.data, event.event_type
    if etype in ("TenantRequested", "AppUpdateRequested", "TenantDeletionRequested", "DomainChangeRequested",
                 "RollbackRequested", "IdleAfterChangeRequested") and current:
        facts = replace(facts, published=True)
    elif etype == "TenantProvisioned":
        facts = replace(facts, provisioned=True)
    elif etype == "RouteConfigured":
        facts = replace(facts, routed=True, route_current=facts.route_current or current)
        if current:
            facts = replace(facts, pending_domain=data.get("pending_domain"),
                            dns_records=list(data.get("dns_records") or []))
    elif etype == "TenantChanged":
        facts = replace(facts, provisioned=True)
        if current:
            facts = replace(facts, built_version=_max(facts.built_version, data["version"]))
    elif etype == "MigrationsApplied":
        facts = replace(facts, provisioned=True, migrated_version=_max(facts.migrated_version, data["version"]))
    elif etype == "ReleaseActivated":
        facts = replace(facts, provisioned=True, active_version=_max(facts.active_version, data["version"]))
    elif etype == "IdleAfterChanged":
        facts = replace(facts, idle_current=facts.idle_current or current)
    elif etype == "RouteRemoved":
        facts = replace(facts, route_removed=True)
    elif etype == "TenantDeprovisioned":
        facts = replace(facts, deprovisioned=True, route_removed=True)
    elif etype in _FAILURE_STAGES and current:
        facts = replace(facts, failure=_failure(etype, data, event.occurred_at))
    elif etype == "MessageDeadLettered" and current:
        facts = replace(facts, failure=FailureFact(
            stage=data["stage"], step=f"{data['service']}:dead-lettered", error=data["error"], retryable=True,
            at=event.occurred_at.isoformat()))
    return replace(status, facts=facts)


def _failure(etype: str, data: dict[str, Any], at: datetime) -> FailureFact:
    return FailureFact(stage=_FAILURE_STAGES[etype], step=data["stage"], error=data["error"],
                       retryable=bool(data.get("retryable")), at=at.isoformat(), version=data.get("version"))


def _max(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


def _at_least(have: int | None, want: int | None) -> bool:
    return have is not None and want is not None and have >= want


def failure_in_force(kind: Kind, f: Facts) -> FailureFact | None:
    """The request's failure, unless a success of its stage (or later) superseded it."""
    fail = f.failure
    if fail is None or (fail.stage == "deprovisioning") != (kind == "delete"):
        return None  # a deletion fails only by teardown, a create or update never by it
    superseded = {
        "provisioning": f.idle_current if kind == "idle" else f.provisioned,
        "building": f.built_version is not None,
        "migrating": _at_least(f.migrated_version, fail.version or f.built_version),
        "releasing": _at_least(f.active_version, fail.version or f.built_version),
        "deprovisioning": f.deprovisioned,
        "routing": f.route_current if kind == "domain" else f.routed,
    }.get(fail.stage, False)
    return None if superseded else fail


def derive(kind: Kind, f: Facts) -> tuple[str, str | None]:
    """(state, stage): the first unmet requirement of the request's pipeline."""
    fail = failure_in_force(kind, f)
    if kind == "delete":
        if f.deprovisioned:
            return "deleted", None
        return ("failed", fail.stage) if fail else ("deleting", "deprovision")
    if fail:
        return "failed", fail.stage
    if kind == "create":
        active = f.active_version is not None
        migrated = active or f.migrated_version is not None
        built = migrated or f.built_version is not None
        provisioned = built or f.provisioned
        steps = [("provisioning", "provision", provisioned), ("provisioning", "route", f.routed),
                 ("building", "build", built), ("migrating", "migrate", migrated),
                 ("migrating", "release", active)]
        if not f.published and not provisioned:
            return "requested", "queued"
    elif kind == "domain":  # only the edge route changes
        steps = [("updating", "route", f.route_current)]
    elif kind == "idle":  # only the runtime's registration changes
        steps = [("updating", "settings", f.idle_current)]
    else:  # an update, or a rollback (a new release copying an old one): build → migrate → release
        target = f.built_version
        steps = [("updating", "build", target is not None),
                 ("updating", "migrate", _at_least(f.migrated_version, target) or _at_least(f.active_version, target)),
                 ("updating", "release", _at_least(f.active_version, target))]
    for state, stage, done in steps:
        if not done:
            return state, stage
    return "ready", None
