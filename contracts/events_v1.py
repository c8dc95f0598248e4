"""Version 1 of every lifecycle event.

The envelope already carries the tenant id, correlation and causation, so a
payload carries only what its consumers need to do their stage without asking
another service: references and digests, never a spec body, never a secret.
Lifecycle: requested → provisioning → building → migrating → ready; updating;
failed (stage + error); deleting → deleted.

Adding an optional field is a minor version (bump `schema_version`, regenerate,
keep the old schema file); anything else is a new major in a new module.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts.envelope import Event, register
from contracts.fields import (
    Actor,
    ArtifactPath,
    BucketName,
    CachePrefix,
    CacheUser,
    Code,
    CustomDomain,
    HostName,
    IdleAfter,
    LogLines,
    MigrationName,
    Milliseconds,
    NonNegativeInt,
    PgIdentifier,
    ReleaseVersion,
    ResourceRef,
    RouteId,
    SecretArn,
    SecretName,
    ServiceName,
    Sha256,
    SpecRef,
    Upstream,
)
from contracts.tenant import EdgeMode

V1 = "1.0"
EVERYONE_WATCHING = ("api",)  # the API's status projection reads every event


# --- api: desired state -------------------------------------------------------------


@register
class TenantRequested(Event):
    """A user asked for a new tenant. The spec was stored by the API first.

    1.1 adds `static_ref`: the spec's static folder, stored by the API. 1.2 adds `edge`:
    where the tenant's traffic enters on AWS (None: the installation's default). 1.3 adds
    `idle_after_s`: scale to zero after that long without a request."""

    event_type = "TenantRequested"
    schema_version = "1.3"
    producers = ("api",)
    kind = "command"
    consumers = ("api", "provisioner")

    spec_ref: SpecRef
    spec_sha256: Sha256
    custom_domain: CustomDomain | None = None
    requested_by: Actor | None = None
    static_ref: str | None = Field(
        default=None, pattern=r"^source:sha256:[0-9a-f]{64}$",
        description="The spec's static folder (zip of static/ stored by the API), uploaded to the tenant bucket",
    )
    edge: EdgeMode | None = Field(
        default=None,
        description="Where the tenant's traffic enters on AWS: its own CloudFront distribution ('dedicated') "
                    "or a tenant of the platform's shared one ('pooled'); None: the installation's default",
    )
    idle_after_s: IdleAfter | None = Field(
        default=None,
        description="Seconds without a request before the tenant's runtime is stopped until its next request "
                    "(scale to zero); 0: always on; None: the platform's default",
    )


@register
class AppUpdateRequested(Event):
    """A user published a new spec for an existing tenant (state: updating).

    1.1 adds `source_ref`: an edited source tree (`hostplane app deploy --source`) whose
    spec.json is the spec of `spec_ref`. 1.2 adds `static_ref`: the spec's static folder."""

    event_type = "AppUpdateRequested"
    schema_version = "1.2"
    producers = ("api",)
    kind = "command"
    consumers = ("api", "builder")

    spec_ref: SpecRef
    spec_sha256: Sha256
    allow_destructive: bool = Field(
        default=False, description="The user accepted migrations that drop data"
    )
    requested_by: Actor | None = None
    source_ref: str | None = Field(
        default=None, pattern=r"^source:sha256:[0-9a-f]{64}$",
        description="Edited source tree (zip stored by the API) the builder packages instead of generating",
    )
    static_ref: str | None = Field(
        default=None, pattern=r"^source:sha256:[0-9a-f]{64}$",
        description="The spec's static folder (zip of static/ stored by the API), uploaded to the tenant bucket",
    )


@register
class TenantDeletionRequested(Event):
    """A user asked to delete a tenant (state: deleting). Route goes first."""

    event_type = "TenantDeletionRequested"
    schema_version = V1
    producers = ("api",)
    kind = "command"
    consumers = ("api", "router-config", "deprovisioner")

    requested_by: Actor | None = None


@register
class DomainChangeRequested(Event):
    """A user set, changed or removed (None) the tenant's custom domain; only the edge
    route changes (router-config answers with RouteConfigured carrying the new hosts)."""

    event_type = "DomainChangeRequested"
    schema_version = V1
    producers = ("api",)
    kind = "command"
    consumers = ("api", "router-config")

    custom_domain: CustomDomain | None = None
    requested_by: Actor | None = None


@register
class RollbackRequested(Event):
    """A user asked to serve a retained release again (state: updating). The builder
    copies that release's artifact byte for byte into a new version ("v7 = rollback of
    v4"), so versions keep growing and no rebuild happens."""

    event_type = "RollbackRequested"
    schema_version = V1
    producers = ("api",)
    kind = "command"
    consumers = ("api", "builder")

    to_version: ReleaseVersion = Field(description="The retained release to serve again")
    requested_by: Actor | None = None


@register
class IdleAfterChangeRequested(Event):
    """A user changed the tenant's idle period (scale to zero) after its creation; only the
    runtime's registration changes (the provisioner writes it and answers IdleAfterChanged).
    None: back to the platform's default."""

    event_type = "IdleAfterChangeRequested"
    schema_version = V1
    producers = ("api",)
    kind = "command"
    consumers = ("api", "provisioner")

    idle_after_s: IdleAfter | None = Field(
        default=None,
        description="Seconds without a request before the tenant's runtime is stopped until its next request "
                    "(scale to zero); 0: always on; None: the platform's default",
    )
    requested_by: Actor | None = None


# --- provisioner ----------------------------------------------------------------------


@register
class TenantProvisioned(Event):
    """Every per-tenant resource exists. Names of resources only: credentials
    stay in the secret named here. Carries the spec reference and domain on, so
    the builder and router-config need no lookup. 1.1 carries the request's `static_ref` on."""

    event_type = "TenantProvisioned"
    schema_version = "1.1"
    producers = ("provisioner",)
    kind = "fact"
    consumers = ("api", "builder", "router-config")

    database: PgIdentifier
    db_role: PgIdentifier
    cache_user: CacheUser
    cache_prefix: CachePrefix
    bucket: BucketName
    secret_name: SecretName
    secret_arn: SecretArn | None = None
    runtime_service: ServiceName
    spec_ref: SpecRef
    spec_sha256: Sha256
    custom_domain: CustomDomain | None = None
    static_ref: str | None = Field(
        default=None, pattern=r"^source:sha256:[0-9a-f]{64}$",
        description="The spec's static folder (zip of static/ stored by the API), uploaded to the tenant bucket",
    )


@register
class IdleAfterChanged(Event):
    """The tenant's runtime registration now holds this idle period (an IdleAfterChangeRequested
    carried out): the runtime agent applies it at its next round, without restarting the
    runtime; a sleeping tenant made always-on wakes (RuntimeWoke, trigger 'settings')."""

    event_type = "IdleAfterChanged"
    schema_version = V1
    producers = ("provisioner",)
    kind = "fact"
    consumers = EVERYONE_WATCHING

    idle_after_s: IdleAfter | None = Field(
        default=None, description="The idle period now registered; 0: always on; None: the platform's default")


# --- builder --------------------------------------------------------------------------


@register
class TenantChanged(Event):
    """Release `version` is built and stored (immutable) and awaits migration. Despite the
    wire name (kept: it is published), it means "release built": a new release, or the
    newest one named again when the same input was built before (no new release).

    1.1 adds `rollback_of`: the release is a byte-identical copy of that older release
    (a rollback); the migrator applies no DDL for it."""

    event_type = "TenantChanged"
    schema_version = "1.1"
    producers = ("builder",)
    kind = "fact"
    consumers = ("api", "migrator")

    version: ReleaseVersion
    artifact_path: ArtifactPath
    sha256: Sha256
    size: NonNegativeInt = Field(description="Artifact size in bytes")
    spec_sha256: Sha256
    previous_version: ReleaseVersion | None = Field(
        default=None, description="Release live when the build started; none for the first"
    )
    allow_destructive: bool = False
    rollback_of: ReleaseVersion | None = Field(
        default=None, description="The older release this one copies (a rollback); none for a build"
    )


# --- migrator -------------------------------------------------------------------------


@register
class MigrationsApplied(Event):
    """Two facts at once: the tenant database matches `version` (the migrations applied now
    are listed; none for a rollback or an unchanged schema), and the pointer (current.json)
    has moved to that release, so it is the live one and the runtimes swap to it."""

    event_type = "MigrationsApplied"
    schema_version = V1
    producers = ("migrator",)
    kind = "fact"
    consumers = EVERYONE_WATCHING

    version: ReleaseVersion
    migrations: list[MigrationName] = Field(description="Migrations applied now, in order; may be empty")


# --- router-config ----------------------------------------------------------------------


class DnsRecord(BaseModel):
    """A record the owner of a custom domain publishes in its own zone."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(min_length=1, max_length=255, pattern=r"^\S+$")
    type: Literal["CNAME", "A", "AAAA", "TXT"]
    value: str = Field(min_length=1, max_length=1024, pattern=r"^\S+$")


@register
class RouteConfigured(Event):
    """The edge routes these hosts to the tenant's runtime.

    1.1 adds `pending_domain` and `dns_records`: a custom domain the edge cannot serve yet
    (AWS: its certificate waits for DNS validation) and the records its owner must publish
    (the certificate's validation records and the domain's own CNAME to the edge). A later
    RouteConfigured with the domain in `hosts` and no `pending_domain` ends the wait."""

    event_type = "RouteConfigured"
    schema_version = "1.1"
    producers = ("router-config",)
    kind = "fact"
    consumers = EVERYONE_WATCHING

    hosts: list[HostName] = Field(min_length=1)
    route_id: RouteId
    upstream: Upstream
    pending_domain: CustomDomain | None = None
    dns_records: list[DnsRecord] = Field(default_factory=list, max_length=10)


@register
class RouteRemoved(Event):
    """The edge no longer routes to the tenant."""

    event_type = "RouteRemoved"
    schema_version = V1
    producers = ("router-config",)
    kind = "fact"
    consumers = EVERYONE_WATCHING

    route_id: RouteId
    hosts: list[HostName] = Field(default_factory=list)


# --- reloader (data plane) ----------------------------------------------------------


@register
class ReleaseActivated(Event):
    """The runtime serves `version`; timings feed the 'about a second' promise."""

    event_type = "ReleaseActivated"
    schema_version = V1
    producers = ("reloader",)
    kind = "fact"
    consumers = EVERYONE_WATCHING

    version: ReleaseVersion
    sha256: Sha256 = Field(description="Digest of the artifact now serving")
    swap_ms: Milliseconds = Field(description="From seeing the new release to traffic moved")
    health_ms: Milliseconds = Field(description="Time the new app took to pass its health check")


@register
class AppCrashed(Event):
    """The live app process died (crash, memory limit, hang) and the runtime restarts it
    after `restart_in_ms` (exponential backoff: a crash loop never spins the CPU)."""

    event_type = "AppCrashed"
    schema_version = V1
    producers = ("reloader",)
    kind = "fact"
    consumers = EVERYONE_WATCHING

    version: ReleaseVersion
    reason: Code = Field(description="'crashed', 'memory_limit' or 'hung'")
    exit_code: int | None = None
    uptime_ms: Milliseconds
    crashes_in_a_row: NonNegativeInt
    restart_in_ms: Milliseconds
    last_log_lines: LogLines = Field(default_factory=list)


@register
class RuntimeSlept(Event):
    """Scale to zero: the tenant served no request for `idle_s` seconds and its runtime was
    stopped; no process of it is left. Its listening socket stays open, so the next request
    waits and wakes it (RuntimeWoke). Published by the host's runtime agent on the tenant
    runtime's behalf (locally; a tenant's own reports may not carry it)."""

    event_type = "RuntimeSlept"
    schema_version = V1
    producers = ("reloader",)
    kind = "fact"
    tenant_may_report = False  # the host says when a tenant sleeps, never the tenant
    consumers = EVERYONE_WATCHING

    idle_s: NonNegativeInt = Field(description="Seconds without a request before it slept")
    version: ReleaseVersion | None = Field(default=None, description="The release it served")


@register
class RuntimeWoke(Event):
    """A sleeping tenant's runtime was started: a request waited on its socket, a new
    release must prove itself before it counts as live (a deploy or rollback), or the
    tenant became always-on. It sleeps again after its idle period."""

    event_type = "RuntimeWoke"
    schema_version = V1
    producers = ("reloader",)
    kind = "fact"
    tenant_may_report = False  # the host says when a tenant sleeps, never the tenant
    consumers = EVERYONE_WATCHING

    trigger: Literal["request", "deploy", "settings"] = Field(
        description="'request': a connection waited; 'deploy': a release to prove; 'settings': it may no longer sleep")
    asleep_s: NonNegativeInt = Field(description="Seconds it had been asleep")


RuntimeFailureReason = Literal["environment", "port_taken", "crash_loop"]
RUNTIME_FAILURE_REASONS = ("'environment': its secret unreadable; 'port_taken': another process holds its port; "
                           "'crash_loop': the runtime keeps dying")


@register
class RuntimeFailed(Event):
    """The host cannot keep the tenant's runtime running: its environment (the tenant's
    secret) cannot be read, its registered port is taken by someone else, or the runtime
    keeps dying. The host retries on its own; the next ReleaseActivated says it runs again.
    Published by the host's runtime agent on the tenant runtime's behalf, once per episode."""

    event_type = "RuntimeFailed"
    schema_version = V1
    producers = ("reloader",)
    kind = "fact"
    tenant_may_report = False  # the host says why it cannot run a tenant, never the tenant
    consumers = EVERYONE_WATCHING

    reason: RuntimeFailureReason = Field(description=RUNTIME_FAILURE_REASONS)
    detail: str = Field(max_length=200, description="What the host saw, never a secret's value")


# --- deprovisioner ------------------------------------------------------------------


@register
class TenantDeprovisioned(Event):
    """Everything the tenant owned is gone and the orphan check found nothing."""

    event_type = "TenantDeprovisioned"
    schema_version = V1
    producers = ("deprovisioner",)
    kind = "fact"
    consumers = EVERYONE_WATCHING

    removed: list[ResourceRef] = Field(default_factory=list, description="What was deleted now")
