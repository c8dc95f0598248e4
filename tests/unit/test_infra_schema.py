"""Every input of every resource the mocks record, checked against the pinned provider's
generated `*Args` classes (infra/schema.py): unknown fields, dict-vs-list nesting, scalar
shapes, missing required fields. Platform stack, and the tenant stack in each edge mode,
with and without a custom domain (zone we host; owner's DNS, pending and validated), and
the tenant program through its StackReference (issue 15)."""

from __future__ import annotations

import pytest

from infra.schema import SchemaReport, args_class, check_resources
from infra.tenant.stack import TenantStack
from tests.support.pulumi_mocks import run_program
from tests.support.infra_stacks import platform, run_tenant_program, tenant_args

pytestmark = pytest.mark.timeout(180)

CUSTOM = {
    "none": {},
    "hosted-zone": {"custom_domain": "shop.example.com", "custom_domain_zone_id": "Z2"},
    "owner-dns-pending": {"custom_domain": "shop.example.com"},
    "owner-dns-ready": {"custom_domain": "shop.example.com", "custom_domain_ready": True},
}


def tenant_resources(edge: str, custom: str, routed: bool = True):
    args = tenant_args("acme", edge, routed=routed, **CUSTOM[custom])
    return run_program(lambda: TenantStack("acme", args)).resources


def assert_clean(report: SchemaReport) -> None:
    assert report.resources > 0 and report.inputs > 0
    assert not report.problems, "\n".join(report.problems)


def test_the_platform_stack_matches_the_providers_schema():
    report = check_resources(platform().resources)
    assert_clean(report)
    assert report.resources >= 150


@pytest.mark.parametrize("edge", ["dedicated", "pooled"])
@pytest.mark.parametrize("custom", sorted(CUSTOM))
@pytest.mark.parametrize("routed", [True, False])
def test_every_tenant_stack_shape_matches_the_providers_schema(edge, custom, routed):
    assert_clean(check_resources(tenant_resources(edge, custom, routed)))


def test_the_tenant_program_through_its_stack_reference_matches_the_providers_schema():
    config = {"hostplane:tenantId": "acme", "hostplane:image": "reloader:1", "hostplane:zoneId": "Z1",
              "hostplane:baseDomain": "apps.example.com", "hostplane:secretName": "hostplane/tenants/acme",
              "hostplane:platformStack": "organization/hostplane-platform/prod", "hostplane:routed": "true",
              "hostplane:wildcardCertificateArn": "arn:aws:acm:us-east-1:1:certificate/w"}
    assert_clean(check_resources(run_tenant_program(config).resources))


def test_the_checker_finds_the_defects_it_is_for():
    """A wrong field name, a dict where a list is wanted, a missing required field."""
    from tests.support.pulumi_mocks import Declared

    bad = Declared("aws:cloudfront/multitenantDistribution:MultitenantDistribution", "d", {
        "origins": [{"id": "a", "domainName": "x", "customHeaders": [{"name": "H", "value": "v"}]}],
        "tenantConfig": {"parameterDefinitions": [{"name": "t", "definitions": {"stringSchemas": []}}]},
        "defaultCacheBehavior": {"targetOriginId": "a", "viewerProtocolPolicy": "allow-all",
                                 "allowedMethods": {"items": ["GET"], "cachedMethods": ["GET"]}},
        "enabled": "yes"}, None)
    problems = "\n".join(check_resources([bad]).problems)
    assert "customHeaders[0].name: no such field" in problems
    assert "required field headerName" in problems
    assert "definitions: wants a list, got dict" in problems
    assert "enabled: wants a bool" in problems
    assert "required field viewerCertificate" in problems


def test_every_declared_type_has_a_generated_args_class():
    types = {r.typ for r in platform().resources if r.typ.startswith("aws:")}
    types |= {r.typ for e in ("dedicated", "pooled") for r in tenant_resources(e, "hosted-zone")
              if r.typ.startswith("aws:")}
    assert all(args_class(t) is not None for t in types)


def schema_counts() -> dict[str, int]:
    """Resources and inputs checked over every shape above (reported in issue 15)."""
    total = SchemaReport()
    check_resources(platform().resources, total)
    for edge in ("dedicated", "pooled"):
        for custom in CUSTOM:
            for routed in (True, False):
                check_resources(tenant_resources(edge, custom, routed), total)
    return {"resources": total.resources, "inputs": total.inputs, "skipped_unknown": total.skipped_unknown,
            "types": len(total.by_type)}


if __name__ == "__main__":  # python -m tests.unit.test_infra_schema
    print(schema_counts())
