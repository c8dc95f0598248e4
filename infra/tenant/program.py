"""The tenant stack program: config (set by the provisioner's AWS backend) + the platform
stack's outputs (StackReference) → one TenantStack."""

from __future__ import annotations

import re

import pulumi
import pulumi_aws as aws

from infra.common import installation
from infra.tenant.args import PlatformRefs, TenantInfraArgs, check_idle_after
from infra.tenant.stack import TenantStack

PLATFORM_OUTPUTS = {
    "cluster_arn": "clusterArn", "capacity_provider": "capacityProvider", "namespace_id": "namespaceId",
    "file_system_id": "fileSystemId", "file_system_arn": "fileSystemArn", "origin_domain": "originDomain",
    "origin_verify": "originVerify", "cache_user_group_id": "cacheUserGroupId",
    "pooled_distribution_id": "pooledDistributionId", "pooled_distribution_arn": "pooledDistributionArn",
    "pooled_kvs_arn": "pooledKvsArn", "pooled_routing_endpoint": "pooledRoutingEndpoint",
    "pooled_connection_group_id": "pooledConnectionGroupId",
    "bus_arn": "busArn",
}


def platform_refs(platform: pulumi.StackReference) -> PlatformRefs:
    return PlatformRefs(**{field: platform.require_output(key) for field, key in PLATFORM_OUTPUTS.items()})


def idle_after(config: pulumi.Config, key: str) -> int | None:
    """An idle period from the stack config: digits only; None when absent or "" (the
    installation's default for `idleAfter`). Anything else is refused before any resource."""
    raw = config.get(key)
    if raw is None or raw == "":
        return None
    return check_idle_after(f"hostplane:{key}", int(raw) if re.fullmatch(r"[0-9]{1,9}", raw) else raw)


def idle_choices(config: pulumi.Config) -> dict[str, int | None]:
    """`idleAfter`, the tenant's own idle period ("" or unset: the installation's), and
    `idleAfterDefault`, the installation's (unset: DEFAULT_IDLE_AFTER_S), as TenantInfraArgs fields."""
    default = idle_after(config, "idleAfterDefault")
    return {"idle_after_s": idle_after(config, "idleAfter"),
            **({} if default is None else {"idle_after_default": default})}


def tenant_args(config: pulumi.Config, platform: PlatformRefs) -> TenantInfraArgs:
    return TenantInfraArgs(
        tenant_id=config.require("tenantId"), platform=platform, image=config.require("image"),
        zone_id=config.require("zoneId"), base_domain=config.require("baseDomain"),
        secret_arn=config.get("secretArn") or aws.secretsmanager.get_secret_output(
            name=config.require("secretName")).arn, wildcard_certificate_arn=config.get("wildcardCertificateArn"),
        edge=config.get("edge") or "pooled", custom_domain=config.get("customDomain"),
        custom_domain_zone_id=config.get("customDomainZoneId"),
        custom_domain_ready=config.get_bool("customDomainReady") or False,
        routed=config.get_bool("routed") or False,  # unset until router-config routes the tenant
        prefix=installation(),  # hostplane:prefix, checked
        **idle_choices(config),
    )


def tenant_program() -> None:
    config = pulumi.Config("hostplane")
    idle_choices(config)  # a bad idle period is refused before any resource, the StackReference included
    platform = pulumi.StackReference(config.require("platformStack"))
    args = tenant_args(config, platform_refs(platform))
    stack = TenantStack(args.tenant_id, args)
    for key, value in stack.outputs.items():
        pulumi.export(key, value)
