"""The platform and tenant programs under tests.support.pulumi_mocks, with the config and
platform outputs the infra tests share: `platform()` runs the platform program once per
test process (one cache for every module that reads it), `tenant_args()` builds a tenant
stack's inputs, `run_tenant_program()` runs the tenant program through its StackReference."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any
from unittest import mock

from infra.platform.program import platform_program
from infra.tenant.args import PlatformRefs, TenantInfraArgs
from tests.support import pulumi_mocks
from tests.support.pulumi_mocks import Declared, RecordingMocks, run_program

CONFIG = {"hostplane:image": "ecr/hostplane:1-control-plane", "hostplane:stateBucket": "hostplane-state",
          "hostplane:cacheAdminPassword": "cache-admin-password-value", "hostplane:originVerify": "origin-verify-value",
          "hostplane:tenantImage": "ecr/hostplane:1", "hostplane:zoneId": "Z0PLATFORM",
          "hostplane:baseDomain": "apps.example.com",
          "hostplane:wildcardCertificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/wildcard"}


# ACM lists one DNS validation record per name a certificate asks for, in no promised order;
# the mock in tests.support.pulumi_mocks answers every certificate with one fixed record, so the platform's
# (edge + api names) runs with these.
ACM_VALIDATIONS = {"domainValidationOptions": [
    {"domainName": name, "resourceRecordName": f"_{label}.{name}.", "resourceRecordType": "CNAME",
     "resourceRecordValue": f"_{label}.acm-validations.aws."}
    for label, name in (("a", "api.apps.example.com"), ("e", "edge.apps.example.com"))]}


def run_platform(program: Callable[[], Any] = platform_program, **config: str) -> RecordingMocks:
    with mock.patch.dict(pulumi_mocks._EXTRA_OUTPUTS, {"aws:acm/certificate:Certificate": ACM_VALIDATIONS}):
        return run_program(program, config=CONFIG | config)


@lru_cache(maxsize=1)
def platform() -> RecordingMocks:
    return run_platform()


def of_type(typ: str) -> list[Declared]:
    """The resources of type `typ` the platform declares."""
    return [r for r in platform().resources if r.typ == typ]

# What a tenant stack reads of the platform's outputs, for one test installation.
ACCT = "123456789012"
REFS = PlatformRefs(
    cluster_arn=f"arn:aws:ecs:eu-west-1:{ACCT}:cluster/hostplane", capacity_provider="hostplane-fleet",
    namespace_id="ns-1", file_system_id="fs-1",
    file_system_arn=f"arn:aws:elasticfilesystem:eu-west-1:{ACCT}:file-system/fs-1",
    origin_domain="edge.apps.example.com", origin_verify="origin-verify-value", cache_user_group_id="hostplane-tenants",
    pooled_distribution_id="MT1", pooled_distribution_arn=f"arn:aws:cloudfront::{ACCT}:distribution/MT1",
    pooled_kvs_arn=f"arn:aws:cloudfront::{ACCT}:key-value-store/k1", pooled_routing_endpoint="d1.cloudfront.net",
    pooled_connection_group_id="CG1",
    bus_arn=f"arn:aws:events:eu-west-1:{ACCT}:event-bus/hostplane")


def secret_arn(tid: str) -> str:
    return f"arn:aws:secretsmanager:eu-west-1:{ACCT}:secret:hostplane/tenants/{tid}-AbCdEf"


def tenant_args(tid: str = "acme", edge: str = "dedicated", image: str = "reloader:1", **kw: Any) -> TenantInfraArgs:
    return TenantInfraArgs(tenant_id=tid, platform=REFS, image=image, zone_id="Z1",
                           base_domain="apps.example.com", secret_arn=secret_arn(tid), edge=edge,
                           wildcard_certificate_arn="arn:aws:acm:us-east-1:1:certificate/w", **kw)


def run_tenant_program(config: dict[str, str]) -> RecordingMocks:
    from infra.tenant.program import PLATFORM_OUTPUTS, tenant_program

    outputs = {key: getattr(REFS, field) for field, key in PLATFORM_OUTPUTS.items()}
    return run_program(tenant_program, config=config, stack_outputs=outputs)
