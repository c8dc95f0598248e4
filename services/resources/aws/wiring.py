"""Swap the local drivers for the tenant-stack drivers (HOSTPLANE_TARGET=aws).

The AWS target's own settings come from HOSTPLANE_AWS_* variables; a missing one is a
clear error at start-up, before any message is taken.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.tenant import EdgeMode
from core.settings import Settings
from services.resources.aws.adapters import StackBucket, StackCache, StackEdge, StackRuntime, TenantStackConvergence
from services.resources.aws.stacks import StackSettings, TenantStacks


class AwsTarget(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HOSTPLANE_AWS_", extra="ignore")

    state_url: str = Field(description="Pulumi S3 backend, s3://<bucket>[/<prefix>]", pattern=r"^s3://")
    kms_alias: str = Field(default="alias/hostplane", description="KMS key of the secrets provider")
    platform_stack: str = Field(description="platform stack name, e.g. organization/hostplane-platform/prod")
    tenant_image: str
    zone_id: str
    base_domain: str
    wildcard_certificate_arn: str | None = None
    edge: EdgeMode = Field(default="pooled", description="the edge of a tenant that chose none")

    def stack_settings(self, settings: Settings) -> StackSettings:
        base = {"image": self.tenant_image, "zoneId": self.zone_id, "baseDomain": self.base_domain,
                "edge": self.edge,
                # the idle period of a tenant that chose none (HOSTPLANE_SCALE_TO_ZERO_AFTER)
                "idleAfterDefault": str(settings.scale_to_zero_after)}
        if self.wildcard_certificate_arn:
            base["wildcardCertificateArn"] = self.wildcard_certificate_arn
        return StackSettings(
            backend_url=self.state_url, platform_stack=self.platform_stack, region=settings.region,
            secrets_provider=f"awskms://{self.kms_alias}?region={settings.region}",
            prefix=settings.name_prefix, base_config=base)


def use_tenant_stacks(resources: Any, settings: Settings, *, stacks: TenantStacks | None = None) -> None:
    """Replace bucket, cache and runtime drivers of `resources` (a TenantResources)."""
    stacks = stacks or TenantStacks(AwsTarget().stack_settings(settings))
    if getattr(resources, "_stack", None) is not None:
        resources._stack.callback(stacks.close)  # the worker processes end with the service
    convergence = TenantStackConvergence(stacks)
    resources.bucket = StackBucket(convergence, resources.bucket)
    resources.cache = StackCache(resources.cache)
    resources.runtime = StackRuntime(convergence)
    resources.edge = StackEdge(stacks)  # teardown waits until router-config stopped the traffic
