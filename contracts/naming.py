"""Tenant identity and the one function that names everything a tenant owns.

Plain Python, no pydantic: a tenant's runtime (reloader) checks its tenant id and names
its artifacts with these, and pydantic alone would be a third of an idle runtime's
memory (bench/runtime_memory.py). contracts.tenant adds the pydantic field type."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

TENANT_ID_PATTERN = r"^[a-z][a-z0-9-]{1,30}$"
RESERVED_TENANT_IDS = frozenset(
    {
        "api", "admin", "www", "static", "edge", "app", "apps", "hostplane", "localhost",
        "mail", "ftp", "root", "system", "internal", "status", "dashboard", "runtime",
        "postgres", "template0", "template1", "default", "public", "aws", "amazon",
    }
)
_TENANT_RE = re.compile(TENANT_ID_PATTERN)  # used with fullmatch: `match` and `$` accept "name\n"

# Where a tenant's traffic enters on AWS (infra/tenant/edge.py): its own CloudFront
# distribution, or a distribution tenant on the platform's shared one. Locally every
# tenant is behind the one Caddy, whatever it chose.
EdgeMode = Literal["pooled", "dedicated"]
EDGE_MODES: tuple[str, ...] = ("pooled", "dedicated")


class InvalidTenantId(ValueError):
    """A tenant id that is not a DNS label we accept."""


def validate_tenant_id(value: str) -> str:
    if not isinstance(value, str) or not _TENANT_RE.fullmatch(value):
        raise InvalidTenantId(
            f"tenant id {value!r} must be 2-31 characters: a lowercase letter, then lowercase "
            "letters, digits or hyphens"
        )
    if value.endswith("-") or "--" in value:
        raise InvalidTenantId(f"tenant id {value!r} must not end with a hyphen or contain '--'")
    if value in RESERVED_TENANT_IDS:
        raise InvalidTenantId(f"tenant id {value!r} is reserved; choose another name")
    return value


@dataclass(frozen=True)
class TenantNames:
    """Every name derived from a tenant id. Build it with `tenant_names()`, nowhere else."""

    tenant_id: str
    database: str
    db_role: str
    cache_user: str
    cache_prefix: str
    bucket: str
    secret: str
    route_id: str
    runtime_service: str
    artifact_dir: str
    host: str
    task_role: str  # AWS: the runtime task's IAM role (the platform scopes `<prefix>-t-*`)


def bucket_name(prefix: str, tenant_id: str) -> str:
    """A tenant's static bucket. `tenant_id` is not checked here: the edge's fixed
    configuration fills it with a placeholder (services.router_config.lookup)."""
    return f"{prefix}-{tenant_id}-static"


def tenant_names(tenant_id: str, *, prefix: str = "hostplane", base_domain: str = "localhost") -> TenantNames:
    """Derive resource names; `prefix` separates installations sharing one account;
    `base_domain` is the zone tenant host names live under (AWS: the platform's domain)."""
    tid = validate_tenant_id(tenant_id)
    sql_safe = tid.replace("-", "_")
    return TenantNames(
        tenant_id=tid,
        database=f"t_{sql_safe}",
        db_role=f"t_{sql_safe}",
        cache_user=f"t-{tid}",
        cache_prefix=f"{tid}:",
        bucket=bucket_name(prefix, tid),
        secret=f"{prefix}/tenants/{tid}",
        route_id=f"tenant-{tid}",
        runtime_service=f"{prefix}-{tid}",
        artifact_dir=tid,
        host=f"{tid}.{base_domain}",
        task_role=f"{prefix}-t-{tid}",
    )


# The tenant lifecycle as clients see it (DESIGN.md "States shown to users"): the API's
# projection derives these, the CLI waits on them.
STATES = ("requested", "provisioning", "building", "migrating", "updating", "ready", "failed",
          "deleting", "deleted")
# Forward order inside one request; `failed` sits outside it (a retry may still succeed).
RANK = {"requested": 0, "provisioning": 1, "building": 2, "migrating": 3, "updating": 3, "ready": 4,
        "deleting": 5, "deleted": 6}
# The states that end each kind of request.
TERMINAL = {"create": ("ready", "failed"), "update": ("ready", "failed"), "delete": ("deleted", "failed"),
            "domain": ("ready", "failed"), "rollback": ("ready", "failed"), "idle": ("ready", "failed")}
