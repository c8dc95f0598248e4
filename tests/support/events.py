"""Events for tests: one valid example of every registered event type (`SAMPLES`), and the
envelopes the API publishes for a tenant's create and delete."""

from __future__ import annotations

from datetime import datetime

from contracts import (
    AppUpdateRequested,
    BuildFailed,
    DeprovisioningFailed,
    Envelope,
    Event,
    MigrationFailed,
    MigrationsApplied,
    ProvisioningFailed,
    ReleaseActivated,
    ReleaseFailed,
    RouteConfigured,
    RouteRemoved,
    TenantChanged,
    TenantDeletionRequested,
    TenantDeprovisioned,
    TenantProvisioned,
    TenantRequested,
)
from contracts.events_v1 import AppCrashed, DomainChangeRequested, IdleAfterChanged, IdleAfterChangeRequested, \
    RollbackRequested, RuntimeFailed, RuntimeSlept, RuntimeWoke
from contracts.failures_v1 import MessageDeadLettered, RouteFailed
from contracts.tenant import EdgeMode

TENANT = "acme"
DIGEST = "ab" * 32
OTHER_DIGEST = "cd" * 32

SAMPLES: list[Event] = [
    TenantRequested(spec_ref="specs/acme/" + DIGEST + ".json", spec_sha256=DIGEST,
                    custom_domain="shop.example.com", requested_by="alice", edge="dedicated",
                    idle_after_s=600),
    TenantProvisioned(
        database="t_acme", db_role="t_acme", cache_user="t-acme", cache_prefix="acme:",
        bucket="hostplane-acme-static", secret_name="hostplane/tenants/acme",
        secret_arn="arn:aws:secretsmanager:us-east-1:123456789012:secret:hostplane/tenants/acme-AbCdEf",
        runtime_service="hostplane-acme", spec_ref="specs/acme/1.json", spec_sha256=DIGEST,
    ),
    ProvisioningFailed(stage="database", error="could not connect", retryable=True),
    AppUpdateRequested(spec_ref="specs/acme/2.json", spec_sha256=OTHER_DIGEST, allow_destructive=True),
    TenantChanged(version=2, artifact_path="acme/releases/2/app.pyz", sha256=DIGEST, size=48213,
                  spec_sha256=OTHER_DIGEST, previous_version=1),
    RollbackRequested(to_version=1, requested_by="alice"),
    BuildFailed(stage="compile", error="entity 'Order' has no fields", retryable=False,
                spec_sha256=OTHER_DIGEST),
    MigrationsApplied(version=2, migrations=["0002_add_order_total"]),
    MigrationFailed(stage="apply", error="column exists", retryable=False, version=2),
    RouteConfigured(hosts=["acme.localhost", "shop.example.com"], route_id="tenant-acme",
                    upstream="127.0.0.1:18001"),
    RouteRemoved(route_id="tenant-acme", hosts=["acme.localhost"]),
    RouteFailed(stage="hosts", error="host shop.example.com is already routed to tenant other", retryable=False,
                hosts=["acme.localhost", "shop.example.com"]),
    ReleaseActivated(version=2, sha256=DIGEST, swap_ms=412, health_ms=230),
    ReleaseFailed(stage="health_check", error="GET /healthz returned 500", retryable=False,
                  version=3, reason="health_check", last_log_lines=["Traceback ...", "KeyError: 'x'"]),
    TenantDeletionRequested(requested_by="alice"),
    DomainChangeRequested(custom_domain="shop.example.com", requested_by="alice"),
    IdleAfterChangeRequested(idle_after_s=0, requested_by="alice"),
    IdleAfterChanged(idle_after_s=0),
    TenantDeprovisioned(removed=["database:t_acme", "bucket:hostplane-acme-static"]),
    DeprovisioningFailed(stage="bucket", error="bucket not empty", retryable=True,
                         remaining=["bucket:hostplane-acme-static"]),
    AppCrashed(version=2, reason="memory_limit", exit_code=-9, uptime_ms=5300, crashes_in_a_row=1,
               restart_in_ms=500, last_log_lines=["allocating"]),
    RuntimeSlept(idle_s=901, version=2),
    RuntimeWoke(trigger="request", asleep_s=3600),
    RuntimeFailed(reason="environment", detail="secret hostplane/tenants/acme: ResourceNotFoundException"),
    MessageDeadLettered(service="provisioner", stage="provisioning", failed_event_type="TenantRequested",
                        failed_event_id="0b1c2d3e-0000-4000-8000-000000000001", receives=5,
                        error="ConnectionRefusedError: [Errno 111] Connection refused"),
]


def sample(model: type[Event]) -> Event:
    return next(s for s in SAMPLES if type(s) is model)


def requested(tenant: str = TENANT, at: datetime | None = None, edge: EdgeMode | None = None) -> Envelope:
    """The API's TenantRequested for `tenant` (spec digest DIGEST)."""
    env = Envelope.new(TenantRequested(spec_ref=f"specs/{tenant}/1.yaml", spec_sha256=DIGEST, edge=edge),
                       tenant_id=tenant, producer="api")
    return env.model_copy(update={"occurred_at": at}) if at else env


def deletion(tenant: str = TENANT, at: datetime | None = None) -> Envelope:
    env = Envelope.new(TenantDeletionRequested(), tenant_id=tenant, producer="api")
    return env.model_copy(update={"occurred_at": at}) if at else env
