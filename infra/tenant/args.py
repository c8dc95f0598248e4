"""What a tenant stack needs: the tenant's choices and the platform stack's outputs."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import pulumi
from pydantic import TypeAdapter, ValidationError

from contracts.fields import IdleAfter
from contracts.tenant import EDGE_MODES, EdgeMode, TenantNames, tenant_names
from core.settings import Settings


# The reloader itself (Python, its HTTP front and control channels) besides the app.
RUNTIME_OVERHEAD_MB = 128
# The installation's idle period when its stack config names none (`idleAfterDefault`): the
# platform's own default, HOSTPLANE_SCALE_TO_ZERO_AFTER's (core/settings.py), 900 s.
DEFAULT_IDLE_AFTER_S: int = Settings.model_fields["scale_to_zero_after"].default
_IDLE_AFTER = TypeAdapter(IdleAfter)  # what the API accepts: a strict int, 0 … 31,536,000


def check_idle_after(what: str, value: object) -> int:
    """`value` as an idle period the API would have accepted, else ValueError naming `what`."""
    try:
        return _IDLE_AFTER.validate_python(value)
    except ValidationError:
        raise ValueError(f"{what} must be a whole number of seconds from 0 (always on) to 31536000, "
                         f"not {value!r}") from None


@dataclass
class PlatformRefs:
    """The platform stack outputs a tenant stack builds on (see infra/platform/program.py)."""

    cluster_arn: pulumi.Input[str]
    capacity_provider: pulumi.Input[str]
    namespace_id: pulumi.Input[str]
    file_system_id: pulumi.Input[str]
    file_system_arn: pulumi.Input[str]
    origin_domain: pulumi.Input[str]  # the ALB under the platform's domain (its certificate's name)
    origin_verify: pulumi.Input[str]
    cache_user_group_id: pulumi.Input[str]
    pooled_distribution_id: pulumi.Input[str]
    pooled_distribution_arn: pulumi.Input[str]
    pooled_kvs_arn: pulumi.Input[str]
    pooled_routing_endpoint: pulumi.Input[str]
    # The connection group that routing endpoint belongs to: a distribution tenant joins it,
    # otherwise CloudFront puts it in a default group DNS does not point at.
    pooled_connection_group_id: pulumi.Input[str]
    bus_arn: pulumi.Input[str]


@dataclass
class TenantInfraArgs:
    tenant_id: str
    platform: PlatformRefs
    image: str
    zone_id: str
    base_domain: str
    secret_arn: pulumi.Input[str]
    wildcard_certificate_arn: pulumi.Input[str] | None = None  # us-east-1, *.<base_domain>
    edge: EdgeMode = "pooled"
    custom_domain: str | None = None
    # The custom domain's Route 53 zone, when we host it: validation records are written
    # there. Otherwise the records are exported for the owner, and the certificate is
    # attached once they say it validated (custom_domain_ready).
    custom_domain_zone_id: str | None = None
    custom_domain_ready: bool = False
    # Whether the edge serves the tenant: router-config's to say (stack config `routed`).
    # False: no DNS record, no KeyValueStore entry, the distribution (tenant) disabled.
    routed: bool = True
    prefix: str = "hostplane"
    # Tenants are packed by memory; CPU is a soft share (64 of an instance's 2048 units
    # reserves little, so an m7g.large holds ~28 runtimes of 256 MiB, not 8).
    cpu: int = 64
    memory_mb: int = 256  # the app's limit (the reloader's --memory-mb) and the task's reservation
    # The container's hard limit: the reloader plus, during a hot swap, two app generations.
    # None: 2 x memory_mb + RUNTIME_OVERHEAD_MB.
    memory_limit: int | None = None
    min_tasks: int = 1
    max_tasks: int = 4
    container_port: int = 8080
    # Scale to zero: seconds without a request after which the tenant's idle alarm fires
    # (docs/scale-to-zero.md, On AWS). None: the installation's default, `idle_after_default`;
    # 0: always on (no alarm).
    idle_after_s: int | None = None
    idle_after_default: int = DEFAULT_IDLE_AFTER_S
    extra_tags: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.edge not in EDGE_MODES:
            raise ValueError(f"edge must be one of {EDGE_MODES}, not {self.edge!r}")
        if not 1 <= self.min_tasks <= self.max_tasks:
            raise ValueError(f"need 1 <= min_tasks ({self.min_tasks}) <= max_tasks ({self.max_tasks})")
        if self.memory_limit_mb < self.memory_mb:
            raise ValueError(f"memory_limit ({self.memory_limit_mb}) below memory_mb ({self.memory_mb})")
        if self.idle_after_s is not None:
            check_idle_after("idle_after_s", self.idle_after_s)
        check_idle_after("idle_after_default", self.idle_after_default)

    @property
    def idle_after(self) -> int:
        """The idle period in force: the tenant's own, else the installation's default."""
        return self.idle_after_default if self.idle_after_s is None else self.idle_after_s

    @property
    def memory_limit_mb(self) -> int:
        return self.memory_limit or 2 * self.memory_mb + RUNTIME_OVERHEAD_MB

    @property
    def names(self) -> TenantNames:
        return tenant_names(self.tenant_id, prefix=self.prefix, base_domain=self.base_domain)

    @property
    def posix_id(self) -> int:
        """A stable POSIX uid/gid per tenant, above every system range. A clash between two
        tenants would not open one's files to the other: each access point pins its own root."""
        return 100_000 + zlib.crc32(self.tenant_id.encode()) % 2_000_000_000
