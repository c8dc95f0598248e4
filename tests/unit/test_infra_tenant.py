"""TenantStack under Pulumi's in-process mocks (no CLI, no AWS): what matters for
isolation, privacy and the two edge modes."""

from __future__ import annotations

import importlib
import inspect
import json
from functools import lru_cache

import pulumi
import pytest

from contracts.tenant import InvalidTenantId, tenant_names
from infra.common import TENANT_TAG
from infra.tenant.stack import TenantStack, cache_access_string
from tests.support.aws_fakes import FakeWorkspace
from tests.support.infra_stacks import ACCT, REFS, run_tenant_program, secret_arn, tenant_args
from tests.support.pulumi_mocks import Declared, RecordingMocks, run_program
from services.resources.cache import COMMAND_RULES

pytestmark = pytest.mark.timeout(120)


@lru_cache(maxsize=None)
def declared(tid: str, edge: str, custom: bool = False) -> RecordingMocks:
    extra = {"custom_domain": "shop.example.com", "custom_domain_zone_id": "Z2"} if custom else {}
    args = tenant_args(tid, edge, **extra)
    return run_program(lambda: TenantStack(tid, args))


def of_type(m: RecordingMocks, typ: str) -> list[Declared]:
    return [r for r in m.resources if r.typ == typ]


def one(m: RecordingMocks, typ: str) -> Declared:
    found = of_type(m, typ)
    assert len(found) == 1, f"{typ}: {len(found)}"
    return found[0]


def statements(doc: str) -> list[dict]:
    return json.loads(doc)["Statement"]


def as_list(v) -> list:
    return v if isinstance(v, list) else [v]


@pytest.mark.parametrize("edge", ["dedicated", "pooled"])
def test_bucket_is_private_and_read_only_by_cloudfront(edge):
    m = declared("acme", edge)
    assert one(m, "aws:s3/bucket:Bucket").inputs["bucket"] == tenant_names("acme").bucket
    block = one(m, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock").inputs
    assert all(block[k] is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                                          "restrictPublicBuckets"))
    assert one(m, "aws:s3/bucketOwnershipControls:BucketOwnershipControls").inputs["rule"] == {
        "objectOwnership": "BucketOwnerEnforced"}
    allows = [s for s in statements(one(m, "aws:s3/bucketPolicy:BucketPolicy").inputs["policy"])
              if s["Effect"] == "Allow"]
    assert len(allows) == 1 and allows[0]["Principal"] == {"Service": "cloudfront.amazonaws.com"}
    assert allows[0]["Action"] == ["s3:GetObject"]
    source = allows[0]["Condition"]["StringEquals"]["AWS:SourceArn"]
    expected = REFS.pooled_distribution_arn if edge == "pooled" else None
    assert source == expected if expected else source.startswith("arn:aws:cloudfront:")


def test_task_role_reads_only_its_own_secret_and_access_point():
    m = declared("acme", "dedicated")
    role = one(m, "aws:iam/role:Role").inputs
    assert role["name"] == tenant_names("acme").task_role
    sts = statements(one(m, "aws:iam/rolePolicy:RolePolicy").inputs["policy"])
    secret_reads = [s for s in sts if any(a.startswith("secretsmanager:") for a in s["Action"])]
    assert [r for s in secret_reads for r in as_list(s["Resource"])] == [secret_arn("acme")]
    efs = [s for s in sts if any(a.startswith("elasticfilesystem:") for a in s["Action"])]
    assert len(efs) == 1 and efs[0]["Action"] == ["elasticfilesystem:ClientMount"]
    ap = one(m, "aws:efs/accessPoint:AccessPoint")
    assert efs[0]["Condition"]["StringEquals"]["elasticfilesystem:AccessPointArn"].endswith(ap.name)
    assert ap.inputs["rootDirectory"]["path"] == "/acme"
    assert ap.inputs["posixUser"]["uid"] == tenant_args().posix_id
    volume = one(m, "aws:ecs/taskDefinition:TaskDefinition").inputs["volumes"][0]["efsVolumeConfiguration"]
    assert volume["authorizationConfig"] == {"accessPointId": f"{ap.name}-id", "iam": "ENABLED"}
    assert volume["transitEncryption"] == "ENABLED"
    # nothing of another tenant anywhere in acme's policy
    other = declared("beta", "dedicated")
    beta_policy = one(other, "aws:iam/rolePolicy:RolePolicy").inputs["policy"]
    assert "acme" not in beta_policy and secret_arn("beta") in beta_policy


@pytest.mark.parametrize("edge", ["dedicated", "pooled"])
def test_no_statement_allows_everything_on_everything(edge):
    for r in declared("acme", edge, True).resources:
        for key in ("policy", "assumeRolePolicy"):
            if isinstance(r.inputs.get(key), str):
                for s in statements(r.inputs[key]):
                    if s["Effect"] == "Allow":
                        assert not ("*" in as_list(s["Action"]) and "*" in as_list(s.get("Resource", []))), r.name


def test_runtime_secrets_come_from_the_tenant_secret_and_never_inline():
    m = declared("acme", "dedicated")
    (container,) = json.loads(one(m, "aws:ecs/taskDefinition:TaskDefinition").inputs["containerDefinitions"])
    assert container["secrets"] == [{"name": "HOSTPLANE_TENANT_ENV", "valueFrom": secret_arn("acme")}]
    assert all("PASSWORD" not in e["name"] and "URL" not in e["name"] for e in container["environment"])
    assert container["command"][:5] == ["python", "-m", "reloader", "--tenant", "acme"]
    limit = container["command"].index("--memory-mb") + 1
    assert container["command"][limit] == str(container["memoryReservation"]), "the app gets the task's memory"
    assert "8081/runtime/healthz" in container["healthCheck"]["command"][-1]  # the reloader, not the app
    assert container["mountPoints"][0]["readOnly"] is True


def test_service_is_binpacked_on_the_fleet_and_registered_with_an_srv_record():
    m = declared("acme", "dedicated")
    svc = one(m, "aws:ecs/service:Service").inputs
    assert svc["name"] == tenant_names("acme").runtime_service
    assert svc["orderedPlacementStrategies"] == [{"type": "binpack", "field": "memory"}]
    assert svc["capacityProviderStrategies"][0]["capacityProvider"] == REFS.capacity_provider
    disc = one(m, "aws:servicediscovery/service:Service").inputs
    assert disc["name"] == tenant_names("acme").runtime_service
    assert disc["dnsConfig"]["dnsRecords"] == [{"type": "SRV", "ttl": 10}]
    assert svc["serviceRegistries"]["registryArn"].endswith("srv")
    policies = of_type(m, "aws:appautoscaling/policy:Policy")
    kinds = {json.dumps(p.inputs["targetTrackingScalingPolicyConfiguration"], sort_keys=True) for p in policies}
    assert any("ECSServiceAverageCPUUtilization" in k for k in kinds)
    assert any("RequestsPerTask" in k for k in kinds)


def test_dedicated_distribution_has_exactly_two_origins_and_two_functions():
    m = declared("acme", "dedicated")
    dist = one(m, "aws:cloudfront/distribution:Distribution").inputs
    origins = {o["originId"]: o for o in dist["origins"]}
    assert set(origins) == {"static", "alb"}
    assert origins["static"]["domainName"].startswith(tenant_names("acme").bucket)
    assert origins["alb"]["domainName"] == REFS.origin_domain
    assert (dist["orderedCacheBehaviors"][0]["pathPattern"], dist["orderedCacheBehaviors"][0]["targetOriginId"]) == (
        "/static/*", "static")
    assert dist["defaultCacheBehavior"]["targetOriginId"] == "alb"
    fns = of_type(m, "aws:cloudfront/function:Function")
    assert len(fns) == 2
    for behavior in (dist["defaultCacheBehavior"], dist["orderedCacheBehaviors"][0]):
        assert sorted(f["eventType"] for f in behavior["functionAssociations"]) == ["viewer-request", "viewer-response"]
    request = next(f for f in fns if "x-tenant-id" in f.inputs["code"])
    assert "'acme'" in request.inputs["code"] and "__TENANT_ID__" not in request.inputs["code"]
    assert not of_type(m, "aws:cloudfront/distributionTenant:DistributionTenant")


def test_pooled_tenant_creates_no_distribution():
    m = declared("acme", "pooled", True)
    assert not of_type(m, "aws:cloudfront/distribution:Distribution")
    assert not of_type(m, "aws:cloudfront/multitenantDistribution:MultitenantDistribution")
    dt = one(m, "aws:cloudfront/distributionTenant:DistributionTenant").inputs
    assert dt["distributionId"] == REFS.pooled_distribution_id
    assert dt["parameters"] == [{"name": "tenant", "value": "acme"}]
    keys = {k.inputs["key"]: k.inputs["value"] for k in of_type(m, "aws:cloudfront/keyvaluestoreKey:KeyvaluestoreKey")}
    assert keys == {"acme.apps.example.com": "acme", "shop.example.com": "acme"}


def test_custom_domain_gets_a_dns_validated_certificate_in_us_east_1():
    m = declared("acme", "dedicated", True)
    cert = one(m, "aws:acm/certificate:Certificate").inputs
    assert cert == {**cert, "domainName": "shop.example.com", "validationMethod": "DNS"}
    assert one(m, "pulumi:providers:aws").inputs["region"] == "us-east-1"
    one(m, "aws:acm/certificateValidation:CertificateValidation")
    dist = one(m, "aws:cloudfront/distribution:Distribution").inputs
    assert sorted(dist["aliases"]) == ["acme.apps.example.com", "shop.example.com"]
    records = {r.inputs["name"] for r in of_type(m, "aws:route53/record:Record")}
    assert "acme.apps.example.com" in records and "shop.example.com" in records


def test_cache_user_has_the_local_acl_rules_and_joins_the_platform_group():
    m = declared("acme", "pooled")
    user = one(m, "aws:elasticache/user:User").inputs
    assert user["userName"] == tenant_names("acme").cache_user and user["engine"] == "valkey"
    assert user["accessString"] == cache_access_string("acme:")
    assert user["accessString"].split()[1:3] == ["~acme:*", "&acme:*"]
    # the local rules, less what ElastiCache refuses to name (issue 15 item 6)
    assert {r for r in COMMAND_RULES if r.lstrip("+-") not in ELASTICACHE_RESTRICTED} <= set(
        user["accessString"].split())
    assoc = one(m, "aws:elasticache/userGroupAssociation:UserGroupAssociation").inputs
    assert assoc["userGroupId"] == REFS.cache_user_group_id


def _taggable(typ: str) -> bool:
    if not typ.startswith("aws:"):
        return False
    _, module, cls = typ.split(":")
    pkg = module.split("/")[0]
    resource = getattr(importlib.import_module(f"pulumi_aws.{pkg}"), cls)
    return "tags" in inspect.signature(resource._internal_init).parameters


@pytest.mark.parametrize("edge", ["dedicated", "pooled"])
def test_every_taggable_resource_carries_the_tenant_tag(edge):
    m = declared("acme", edge, True)
    taggable = [r for r in m.resources if _taggable(r.typ)]
    assert len(taggable) >= 10
    untagged = [r.name for r in taggable if (r.inputs.get("tags") or {}).get(TENANT_TAG) != "acme"]
    assert untagged == [], untagged


def test_bad_arguments_are_refused_before_any_resource():
    with pytest.raises(ValueError, match="edge must be one of"):
        tenant_args(edge="sideways")
    with pytest.raises(ValueError, match="min_tasks"):
        tenant_args(min_tasks=3, max_tasks=2)
    with pytest.raises(InvalidTenantId):
        _ = tenant_args(tid="Bad_Name").names


def test_mock_runtime_does_not_leak_into_the_calling_thread():
    declared("acme", "pooled")
    from pulumi.runtime.settings import SETTINGS

    assert SETTINGS.monitor is None


# What the provisioner's AWS backend sets (services/resources/aws/stacks.py) for a pooled tenant.
PROGRAM_CONFIG = {"hostplane:tenantId": "acme", "hostplane:image": "reloader:1", "hostplane:zoneId": "Z1",
                  "hostplane:baseDomain": "apps.example.com", "hostplane:secretName": "hostplane/tenants/acme",
                  "hostplane:platformStack": "org/hostplane-platform/prod", "hostplane:edge": "pooled"}


def test_program_reads_the_backends_config_and_the_platform_stack_outputs():
    m = run_tenant_program(PROGRAM_CONFIG | {"hostplane:routed": "true"})
    ref = one(m, "pulumi:pulumi:StackReference")
    assert ref.name == "org/hostplane-platform/prod"
    assert one(m, "aws:cloudfront/distributionTenant:DistributionTenant").inputs["distributionId"] == "MT1"
    policy = one(m, "aws:iam/rolePolicy:RolePolicy").inputs["policy"]
    assert "secret:hostplane/tenants/acme-AbCdEf" in policy


def test_dedicated_distribution_reaches_the_alb_by_the_name_its_certificate_covers():
    # CloudFront checks the origin's certificate against the origin domain: the ALB's own
    # *.elb.amazonaws.com name can have no such certificate (every request would be a 502).
    from infra.platform.edge import origin_domain

    dist = one(declared("acme", "dedicated"), "aws:cloudfront/distribution:Distribution").inputs
    alb = next(o for o in dist["origins"] if o["originId"] == "alb")
    assert alb["domainName"] == origin_domain("apps.example.com") == REFS.origin_domain
    assert not alb["domainName"].endswith(".elb.amazonaws.com")
    assert alb["customOriginConfig"]["originProtocolPolicy"] == "https-only"
    assert alb["customHeaders"] == [{"name": "X-Origin-Verify", "value": REFS.origin_verify}]


def test_requests_scaling_tracks_exactly_the_metric_the_reloader_publishes():
    import asyncio
    import contextlib

    from infra.tenant.runtime import REQUESTS_PER_TASK_TARGET
    from reloader.traffic import RequestCount, RequestsPerTask

    sent: list[dict] = []

    class CloudWatch:
        async def put_metric_data(self, **kw):
            sent.append(kw)

    @contextlib.asynccontextmanager
    async def client():
        yield CloudWatch()

    m = declared("acme", "dedicated")
    policies = of_type(m, "aws:appautoscaling/policy:Policy")
    configs = [p.inputs["targetTrackingScalingPolicyConfiguration"] for p in policies]
    (requests,) = [c for c in configs if "customizedMetricSpecification" in c]
    assert requests["targetValue"] == REQUESTS_PER_TASK_TARGET
    spec = requests["customizedMetricSpecification"]
    metric = RequestsPerTask("acme", RequestCount(), client)
    metric.close_minute()
    assert asyncio.run(metric.publish()) is True
    (call,) = sent  # what the reloader sends, compared with what the policy tracks and the role allows
    (datum,) = call["MetricData"]
    assert call["Namespace"] == "hostplane/Runtime/acme"  # the tenant's own namespace
    assert (spec["namespace"], spec["metricName"], spec["statistic"]) == (call["Namespace"], datum["MetricName"],
                                                                          "Average")
    assert spec["dimensions"] == [{"name": d["Name"], "value": d["Value"]} for d in datum["Dimensions"]]
    sts = statements(one(m, "aws:iam/rolePolicy:RolePolicy").inputs["policy"])
    (put,) = [s for s in sts if "cloudwatch:PutMetricData" in as_list(s["Action"])]
    assert put["Condition"] == {"StringEquals": {"cloudwatch:namespace": call["Namespace"]}}


@pytest.mark.parametrize("edge", ["dedicated", "pooled"])
def test_an_unrouted_tenant_has_no_name_leading_to_it(edge):
    """router-config's `routed=false` (before the first route, and first on deletion)."""
    routed = declared("acme", edge, custom=True)
    m = run_program(lambda: TenantStack("acme", tenant_args(
        "acme", edge, custom_domain="shop.example.com", custom_domain_zone_id="Z2", routed=False)))
    records = {r.inputs["name"] for r in of_type(m, "aws:route53/record:Record")}
    assert {"acme.apps.example.com", "shop.example.com"} <= {r.inputs["name"] for r in
                                                             of_type(routed, "aws:route53/record:Record")}
    assert not records & {"acme.apps.example.com", "shop.example.com"}  # validation records only
    assert of_type(m, "aws:cloudfront/keyvaluestoreKey:KeyvaluestoreKey") == []
    typ = ("aws:cloudfront/distribution:Distribution" if edge == "dedicated"
           else "aws:cloudfront/distributionTenant:DistributionTenant")
    assert one(m, typ).inputs["enabled"] is False and one(routed, typ).inputs["enabled"] is True
    assert one(m, "aws:acm/certificate:Certificate")  # validation goes on while unrouted


def test_a_new_stack_is_unrouted_until_router_config_says_so():
    fresh = run_tenant_program(PROGRAM_CONFIG)
    assert of_type(fresh, "aws:route53/record:Record") == []
    routed = run_tenant_program(PROGRAM_CONFIG | {"hostplane:routed": "true"})
    assert [r.inputs["name"] for r in of_type(routed, "aws:route53/record:Record")] == ["acme.apps.example.com"]


# --- a hostile tenant: its role speaks only for itself (issue 14, part 6) ---------------------------

def runtime_types() -> list[str]:
    """The catalog's types a runtime reports itself (producers include the reloader; not the
    sleep and wake the host states about it)."""
    from contracts.registry import registered_events

    return sorted({e.event_type for e in registered_events() if "reloader" in e.producers and e.tenant_may_report})


def policy_of(m: RecordingMocks) -> list[dict]:
    return statements(one(m, "aws:iam/rolePolicy:RolePolicy").inputs["policy"])


def entry(event, tenant_id: str, producer: str):
    """What the reloader's (or anyone's) publisher sends for this event: events.publisher's entry."""
    from contracts.envelope import Envelope
    from events.publisher import PublishEntry

    return PublishEntry.from_envelope(Envelope.new(event, tenant_id=tenant_id, producer=producer))


def may_put(sts: list[dict], bus_arn: str, e) -> bool:
    from tests.support.pulumi_mocks import condition_allows, put_events_context

    return any("events:PutEvents" in as_list(s["Action"]) and bus_arn in as_list(s["Resource"])
               and condition_allows(s.get("Condition"), put_events_context(e.source, e.detail_type))
               for s in sts if s["Effect"] == "Allow")


def test_the_tenant_role_puts_events_only_under_its_own_runtime_source_and_types():
    from contracts.envelope import runtime_source

    sts = policy_of(declared("acme", "pooled"))
    (put,) = [s for s in sts if "events:PutEvents" in as_list(s["Action"])]
    assert put["Resource"] == REFS.bus_arn and put["Action"] == ["events:PutEvents"]
    cond = put["Condition"]
    assert cond["ForAllValues:StringEquals"] == {"events:source": [runtime_source("acme")]}
    assert runtime_source("acme") == "hostplane.runtime.acme"
    assert cond["StringEquals"] == {"events:detail-type": runtime_types()}
    assert {"ReleaseActivated", "ReleaseFailed"} <= set(runtime_types())
    assert cond["Null"] == {"events:source": "false", "events:detail-type": "false"}  # ForAllValues holds on none


def test_the_tenant_role_admits_the_runtimes_own_envelopes_and_nothing_forged():
    from contracts.events_v1 import AppUpdateRequested, ReleaseActivated, TenantDeletionRequested

    sts, bus = policy_of(declared("acme", "dedicated")), REFS.bus_arn
    ok = ReleaseActivated(version=3, sha256="a" * 64, swap_ms=5, health_ms=7)
    assert may_put(sts, bus, entry(ok, "acme", "reloader"))
    assert not may_put(sts, bus, entry(ok, "beta", "reloader")), "a runtime event about another tenant"
    assert not may_put(sts, bus, entry(ok, "acme", "api")), "the runtime's type under a control-plane source"
    forged = TenantDeletionRequested.model_construct()
    assert not may_put(sts, bus, entry(forged, "beta", "api"))
    assert not may_put(sts, bus, entry(forged, "acme", "reloader")), "a control-plane type under its own source"
    assert not may_put(sts, bus, entry(AppUpdateRequested.model_construct(), "beta", "api"))
    assert not may_put(sts, "arn:aws:events:eu-west-1:123456789012:event-bus/default", entry(ok, "acme", "reloader"))
    from contracts.events_v1 import RuntimeSlept, RuntimeWoke

    for fact in (RuntimeSlept(idle_s=900), RuntimeWoke(trigger="request", asleep_s=5)):
        assert not may_put(sts, bus, entry(fact, "acme", "reloader")), "a tenant saying it sleeps while it serves"


@pytest.mark.parametrize("edge", ["dedicated", "pooled"])
@pytest.mark.parametrize("custom", [False, True])
def test_no_unconditioned_put_events_on_any_tenant_role(edge, custom):
    m = declared("acme", edge, custom)
    for r in of_type(m, "aws:iam/rolePolicy:RolePolicy") + of_type(m, "aws:iam/policy:Policy"):
        for s in statements(r.inputs["policy"]):
            actions = as_list(s["Action"])
            if s["Effect"] != "Allow" or not any(a in ("*", "events:*", "events:Put*", "events:PutEvents")
                                                 for a in actions):
                continue
            assert actions == ["events:PutEvents"], (r.name, actions)
            assert s["Condition"]["ForAllValues:StringEquals"]["events:source"] == ["hostplane.runtime.acme"]
            assert s["Condition"]["Null"]["events:source"] == "false"


def test_every_grant_of_the_tenant_role_is_scoped_to_the_tenants_own_resources():
    """Its secret, its bucket, its log group, its access point, its source, its namespace, its
    image repository: each by ARN or, where AWS offers no resource, by a condition."""
    image = f"{ACCT}.dkr.ecr.eu-west-1.amazonaws.com/hostplane-runtime:7"
    m = run_program(lambda: TenantStack("acme", tenant_args("acme", "dedicated", image=image)))
    sts = policy_of(m)
    by_sid = {s["Sid"]: s for s in sts}
    assert set(by_sid) == {"OwnSecret", "OwnArtifacts", "OwnBucket", "OwnLogs", "EcrLogin", "PullImage",
                           "ReportReleases", "RuntimeMetrics"}
    assert by_sid["PullImage"]["Resource"] == f"arn:aws:ecr:eu-west-1:{ACCT}:repository/hostplane-runtime"
    assert by_sid["RuntimeMetrics"]["Condition"] == {"StringEquals": {"cloudwatch:namespace": "hostplane/Runtime/acme"}}
    on_everything = {a for s in sts if s["Resource"] == "*" for a in as_list(s["Action"])}
    # the only actions AWS gives no resource type: the ECR login, and metrics (bound by namespace)
    assert on_everything == {"ecr:GetAuthorizationToken", "cloudwatch:PutMetricData"}
    shared = {REFS.file_system_arn: "OwnArtifacts", REFS.bus_arn: "ReportReleases"}
    for s in sts:
        for arn in as_list(s["Resource"]):
            if arn == "*" or arn in shared:
                assert arn == "*" or s["Sid"] == shared[arn] and s["Condition"], s["Sid"]
                continue
            assert "acme" in arn or arn.endswith("repository/hostplane-runtime"), (s["Sid"], arn)
    assert by_sid["OwnLogs"]["Resource"].endswith(":*")  # the streams of its own group


def test_an_image_outside_ecr_gets_no_registry_rights():
    sts = policy_of(declared("acme", "pooled"))  # image "reloader:1"
    assert not [s for s in sts if any(a.startswith("ecr:") for a in as_list(s["Action"]))]


def test_each_tenant_container_has_a_hard_memory_limit_above_its_reservation():
    from infra.tenant.args import RUNTIME_OVERHEAD_MB

    (c,) = json.loads(one(declared("acme", "pooled"), "aws:ecs/taskDefinition:TaskDefinition")
                      .inputs["containerDefinitions"])
    assert c["memoryReservation"] == 256
    # the reloader plus two app generations during a hot swap, each held to --memory-mb
    assert c["memory"] == 2 * 256 + RUNTIME_OVERHEAD_MB
    assert c["command"][c["command"].index("--memory-mb") + 1] == "256"
    m = run_program(lambda: TenantStack("acme", tenant_args("acme", "pooled", memory_mb=300, memory_limit=700)))
    (c,) = json.loads(one(m, "aws:ecs/taskDefinition:TaskDefinition").inputs["containerDefinitions"])
    assert (c["memoryReservation"], c["memory"]) == (300, 700)
    with pytest.raises(ValueError, match="memory_limit"):
        tenant_args(memory_mb=512, memory_limit=256)


def test_the_tenant_role_policy_fits_iams_inline_limit():
    """10,240 characters without whitespace for a role's inline policies (IAM quotas)."""
    image = f"{ACCT}.dkr.ecr.eu-west-1.amazonaws.com/hostplane-runtime:7"
    tid = "a" * 20 + "-storefront"  # the longest tenant id (31 characters)
    m = run_program(lambda: TenantStack(tid, tenant_args(tid, "dedicated", image=image)))
    size = len("".join(one(m, "aws:iam/rolePolicy:RolePolicy").inputs["policy"].split()))
    assert size < 10_240 // 4, size


# --- issue 15: what a first `pulumi up` needs ---------------------------------------------------------

@pytest.mark.parametrize("edge", ["dedicated", "pooled"])
def test_the_cpu_share_sits_on_the_container_and_the_task_level_cpu_is_valid_on_ec2(edge):
    """Item 5: on EC2 a task-level cpu must be 128 to 196,608 units (ECS RegisterTaskDefinition);
    the soft share of 64 units goes on the container."""
    task = one(declared("acme", edge), "aws:ecs/taskDefinition:TaskDefinition").inputs
    assert task["requiresCompatibilities"] == ["EC2"]
    assert "cpu" not in task or 128 <= int(task["cpu"]) <= 196_608
    (c,) = json.loads(task["containerDefinitions"])
    assert c["cpu"] == 64


# ElastiCache's restricted commands (ElastiCache user guide, "Restricted commands"); RBAC: "you
# can't use disabled or renamed commands ... an exception is raised" (Clusters.RBAC).
ELASTICACHE_RESTRICTED = {"bgrewriteaof", "bgsave", "config", "debug", "migrate", "replicaof", "save", "slaveof",
                          "shutdown", "sync"}


def test_the_cache_access_string_names_no_command_elasticache_forbids():
    """Item 6: `-config -debug -shutdown -migrate` are refused; `-@dangerous` already denies them."""
    rules = one(declared("acme", "pooled"), "aws:elasticache/user:User").inputs["accessString"].split()
    assert not [r for r in rules if r.lstrip("+-").split("|")[0].lower() in ELASTICACHE_RESTRICTED]
    assert "-@dangerous" in rules and rules.index("-@dangerous") > rules.index("+@all")
    assert "reset" not in rules  # ElastiCache manages passwords; reset would drop them


def test_a_pooled_tenant_joins_the_platforms_connection_group_its_dns_points_at():
    """Item 9: DNS names the platform connection group's routing endpoint; a distribution tenant
    without connection_group_id lands in a default group that endpoint does not serve."""
    m = declared("acme", "pooled")
    tenant = one(m, "aws:cloudfront/distributionTenant:DistributionTenant").inputs
    assert tenant["connectionGroupId"] == REFS.pooled_connection_group_id
    (host,) = [r.inputs for r in of_type(m, "aws:route53/record:Record") if r.inputs["name"] == "acme.apps.example.com"]
    assert host["records"] == [REFS.pooled_routing_endpoint]
    program = run_tenant_program(PROGRAM_CONFIG | {"hostplane:routed": "true"})
    assert one(program, "aws:cloudfront/distributionTenant:DistributionTenant").inputs["connectionGroupId"] == "CG1"


def covers(cert_names: list[str], host: str) -> bool:
    return any(n == host or (n.startswith("*.") and host.split(".", 1)[1] == n[2:]) for n in cert_names)


@pytest.mark.parametrize("edge", ["dedicated", "pooled"])
@pytest.mark.parametrize("custom", [{"custom_domain_zone_id": "Z2"}, {"custom_domain_ready": True}])
def test_the_attached_certificate_covers_every_name_the_edge_serves(edge, custom):
    """Item 10: once the custom domain's certificate is attached it is the only viewer
    certificate, so it must name <tenant>.<base domain> too (validated in the platform zone)."""
    m = run_program(lambda: TenantStack("acme", tenant_args("acme", edge, custom_domain="shop.example.com",
                                                            **custom)))
    cert = one(m, "aws:acm/certificate:Certificate").inputs
    names = [cert["domainName"], *cert.get("subjectAlternativeNames", [])]
    if edge == "dedicated":
        dist = one(m, "aws:cloudfront/distribution:Distribution").inputs
        served = dist["aliases"]
        assert dist["viewerCertificate"]["acmCertificateArn"].endswith("acme-cert")
    else:
        tenant = one(m, "aws:cloudfront/distributionTenant:DistributionTenant").inputs
        served = [d["domain"] for d in tenant["domains"]]
        assert tenant["customizations"]["certificate"]["arn"].endswith("acme-cert")
    assert sorted(served) == ["acme.apps.example.com", "shop.example.com"]
    assert all(covers(names, h) for h in served), (names, served)
    # our own name's validation record is ours to write, in the platform zone
    records = [r.inputs for r in of_type(m, "aws:route53/record:Record")]
    assert any(r["zoneId"] == "Z1" and r["name"] == "_x.acme.apps.example.com." for r in records)
    # the owner is asked to publish only the custom domain's records (certificateValidation)
    seen: list = []
    run_program(lambda: pulumi.Output.from_input(TenantStack("acme", tenant_args(
        "acme", edge, custom_domain="shop.example.com", **custom)).validation_records).apply(seen.append))
    assert [[r["name"] for r in records] for records in seen] == [["_x.shop.example.com."]]


def test_concurrent_tenant_cache_associations_have_time_to_wait_their_turn():
    """Item 14: ModifyUserGroup fails with InvalidUserGroupState while the group is modifying;
    the provider retries that until the create/delete timeout (10 min by default), which
    concurrent tenant stacks can exhaust."""
    m = declared("acme", "pooled")
    (assoc,) = of_type(m, "aws:elasticache/userGroupAssociation:UserGroupAssociation")
    timeouts = m.options[(assoc.typ, assoc.name)]["customTimeouts"]
    assert timeouts == {"create": "45m", "delete": "45m"}


@pytest.mark.parametrize("edge", ["dedicated", "pooled"])
def test_the_tenants_cloud_map_service_is_deleted_with_its_instances(edge):
    """Item 15: DeleteService fails while instances are registered (tasks still deregistering)."""
    srv = one(declared("acme", edge), "aws:servicediscovery/service:Service").inputs
    assert srv["forceDestroy"] is True


# --- scale to zero on AWS: the tenant stack's part (docs/scale-to-zero.md, On AWS) ----------------------

IDLE_ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"


def idle(idle_after_s, edge: str = "pooled", **kw) -> RecordingMocks:
    return run_program(lambda: TenantStack("acme", tenant_args("acme", edge, idle_after_s=idle_after_s, **kw)))


def test_the_idle_alarm_watches_the_tenants_own_requests_metric_for_its_idle_period():
    from reloader.traffic import METRICS_NAMESPACE, REQUESTS_PER_TASK, TENANT_DIMENSION

    alarm = one(idle(900), IDLE_ALARM).inputs
    assert alarm["name"] == "hostplane-idle-acme"
    assert (alarm["namespace"], alarm["metricName"]) == (f"{METRICS_NAMESPACE}/acme", REQUESTS_PER_TASK)
    assert alarm["namespace"] == "hostplane/Runtime/acme" and alarm["metricName"] == "RequestsPerTask"
    assert alarm["dimensions"] == {TENANT_DIMENSION: "acme"} == {"TenantId": "acme"}
    assert (alarm["statistic"], alarm["period"], alarm["evaluationPeriods"]) == ("Sum", 60, 15)  # 900 s
    assert (alarm["threshold"], alarm["comparisonOperator"]) == (0, "LessThanOrEqualToThreshold")
    assert alarm["treatMissingData"] == "notBreaching"  # a sleeping service publishes nothing
    # the activator takes the state change from EventBridge: no action of the alarm's own
    assert not any(alarm.get(k) for k in ("alarmActions", "okActions", "insufficientDataActions"))
    assert alarm["tags"][TENANT_TAG] == "acme"
    assert one(idle(61), IDLE_ALARM).inputs["evaluationPeriods"] == 2  # rounded up: never sooner than asked


def test_the_idle_alarm_watches_the_same_metric_the_scaling_policy_tracks():
    m = idle(300, "dedicated")
    alarm = one(m, IDLE_ALARM).inputs
    (spec,) = [p.inputs["targetTrackingScalingPolicyConfiguration"]["customizedMetricSpecification"]
               for p in of_type(m, "aws:appautoscaling/policy:Policy")
               if "customizedMetricSpecification" in p.inputs["targetTrackingScalingPolicyConfiguration"]]
    assert (alarm["namespace"], alarm["metricName"]) == (spec["namespace"], spec["metricName"])
    assert [{"name": k, "value": v} for k, v in alarm["dimensions"].items()] == spec["dimensions"]
    assert alarm["evaluationPeriods"] == 5


@pytest.mark.parametrize("edge", ["dedicated", "pooled"])
def test_an_always_on_tenant_has_no_idle_alarm(edge):
    assert of_type(idle(0, edge), IDLE_ALARM) == []
    assert of_type(idle(None, edge, idle_after_default=0), IDLE_ALARM) == []  # installation: never
    assert len(of_type(idle(None, edge), IDLE_ALARM)) == 1  # the platform's default, 900 s


def test_no_tenant_defaults_to_another_idle_period_than_the_platforms():
    from core.settings import Settings
    from infra.tenant.args import DEFAULT_IDLE_AFTER_S

    assert tenant_args().idle_after == DEFAULT_IDLE_AFTER_S == Settings.model_fields["scale_to_zero_after"].default
    assert one(idle(None), IDLE_ALARM).inputs["evaluationPeriods"] == DEFAULT_IDLE_AFTER_S // 60
    assert one(idle(None, idle_after_default=120), IDLE_ALARM).inputs["evaluationPeriods"] == 2
    assert one(idle(600, idle_after_default=120), IDLE_ALARM).inputs["evaluationPeriods"] == 10  # its own first


@pytest.mark.parametrize(("idle_after_s", "window"), [
    (1, (60, 1)), (900, (60, 15)), (86_400, (60, 1440)),  # minutes: at most one day of them
    (86_401, (3600, 25)), (604_800, (3600, 168)),  # then hours, up to CloudWatch's 7 days
    (0, None), (604_801, None), (31_536_000, None),  # always on; longer than CloudWatch can watch
])
def test_the_idle_window_fits_cloudwatchs_limits_and_never_ends_before_the_idle_period(idle_after_s, window):
    from infra.tenant.runtime import idle_alarm_window

    assert idle_alarm_window(idle_after_s) == window
    if window is not None:
        period, periods = window
        assert period * periods >= idle_after_s and period * (periods - 1) < idle_after_s
        # PutMetricAlarm: Period x EvaluationPeriods <= 604,800 s, <= 86,400 s for a period under an hour
        assert period * periods <= (86_400 if period < 3600 else 604_800)
        assert period % 60 == 0


def test_a_tenant_idle_longer_than_cloudwatch_can_watch_stays_awake():
    assert of_type(idle(31_536_000), IDLE_ALARM) == []
    assert one(idle(604_800), IDLE_ALARM).inputs["period"] == 3600


@pytest.mark.parametrize("bad", [-1, 31_536_001, True, "900", 1.5])
def test_a_bad_idle_period_is_refused_before_any_resource(bad):
    with pytest.raises(ValueError, match="idle_after_s must be a whole number of seconds"):
        tenant_args(idle_after_s=bad)
    with pytest.raises(ValueError, match="idle_after_default must be a whole number of seconds"):
        tenant_args(idle_after_default=bad)


BAD_IDLE_CONFIG = ["-1", "31536001", "1.5", "900s", " 900", "true", "1e3", "9" * 12]


def test_the_program_refuses_a_bad_idle_config_before_any_resource():
    from unittest import mock

    from infra.tenant.program import PLATFORM_OUTPUTS, tenant_program

    seen: list[str] = []
    original = RecordingMocks.new_resource

    def new_resource(self, args):
        seen.append(args.typ)
        return original(self, args)

    def run(config):
        outputs = {k: getattr(REFS, f) for f, k in PLATFORM_OUTPUTS.items()}
        with mock.patch.object(RecordingMocks, "new_resource", new_resource):
            return run_program(tenant_program, config=PROGRAM_CONFIG | config, stack_outputs=outputs)

    for key in ("idleAfter", "idleAfterDefault"):
        for bad in BAD_IDLE_CONFIG:
            with pytest.raises(ValueError, match=f"hostplane:{key} must be a whole number of seconds"):
                run({f"hostplane:{key}": bad})
            assert seen == [], f"{key}={bad!r}: declared before the refusal"
    run({"hostplane:idleAfter": "900", "hostplane:idleAfterDefault": "0"})
    assert "pulumi:pulumi:StackReference" in seen and IDLE_ALARM in seen  # good values: the same program declares


@pytest.mark.parametrize(("config", "periods"), [
    ({"hostplane:idleAfter": "300"}, 5), ({}, 15), ({"hostplane:idleAfter": ""}, 15),
    ({"hostplane:idleAfterDefault": "120"}, 2), ({"hostplane:idleAfter": "0"}, None),
    ({"hostplane:idleAfter": "", "hostplane:idleAfterDefault": "0"}, None),
])
def test_the_program_reads_the_idle_period_from_its_config(config, periods):
    m = run_tenant_program(PROGRAM_CONFIG | config)
    alarms = of_type(m, IDLE_ALARM)
    assert [a.inputs["evaluationPeriods"] for a in alarms] == ([] if periods is None else [periods])


def test_the_dedicated_edge_waits_for_a_waking_runtime_as_long_as_cloudfront_allows():
    """CloudFront's OriginReadTimeout: 30 s by default, 60 s at most without a quota increase;
    a wake on AWS takes tens of seconds."""
    from infra.tenant.edge import ORIGIN_READ_TIMEOUT_S

    dist = one(declared("acme", "dedicated"), "aws:cloudfront/distribution:Distribution").inputs
    origins = {o["originId"]: o for o in dist["origins"]}
    assert origins["alb"]["customOriginConfig"]["originReadTimeout"] == ORIGIN_READ_TIMEOUT_S == 60
    assert "customOriginConfig" not in origins["static"]  # the bucket is no custom origin


# The tenant stack driver (services/resources/aws/stacks.py) against the real tenant program: each
# `up` runs it under the mocks with the config the driver set, and exports what it exports.

class ProgramWorkspace(FakeWorkspace):
    """tests.support.aws_fakes.FakeWorkspace whose `up` runs infra/tenant/program.py."""

    declared: RecordingMocks | None = None  # what the last `up` declared

    def outputs_for(self, names, config):
        from unittest import mock

        from infra.tenant.program import PLATFORM_OUTPUTS, tenant_program

        exported: dict = {}

        def export(key, value):
            pulumi.Output.from_input(value).apply(lambda v: exported.__setitem__(key, v))

        platform = {k: getattr(REFS, f) for f, k in PLATFORM_OUTPUTS.items()}
        with mock.patch.object(pulumi, "export", export):
            self.declared = run_program(tenant_program, config=dict(config), stack_outputs=platform)
        return exported


def alarm_periods(ws) -> int | None:
    alarms = of_type(ws.declared, IDLE_ALARM)
    return alarms[0].inputs["evaluationPeriods"] if alarms else None


STACK_SETTINGS_CONFIG = {"image": "reloader:1", "zoneId": "Z1", "baseDomain": "apps.example.com", "edge": "pooled"}


def stacks_on(ws, **base):
    from services.resources.aws.stacks import StackSettings, TenantStacks

    settings = StackSettings(backend_url="s3://state/hostplane", secrets_provider="awskms://alias/hostplane",
                             platform_stack="org/hostplane-platform/prod", region="eu-west-1",
                             base_config=STACK_SETTINGS_CONFIG | base)
    return TenantStacks(settings, workspace=ws, backoff_s=0)


async def test_the_tenants_idle_period_reaches_its_stack_and_survives_a_route():
    from services.resources.base import NO_OPTIONS, TenantOptions

    ws, names = ProgramWorkspace(), tenant_names("acme")
    stacks = stacks_on(ws)
    assert stacks.config_for(names, TenantOptions(idle_after_s=300))["idleAfter"] == "300"
    assert "idleAfter" not in stacks.config_for(names)  # not chosen: what the stack carries
    result = await stacks.converge(names, TenantOptions(idle_after_s=300))
    stack = ws.stacks[names.runtime_service]
    assert stack.config["hostplane:idleAfter"] == "300" and alarm_periods(ws) == 5
    assert (result.outputs["idleAfter"], result.outputs["idleAfterS"]) == ("300", 300)
    assert result.outputs["idleAlarm"] == "hostplane-idle-acme"
    await stacks.route(names, custom_domain=None, routed=True)  # router-config's keys only
    assert stack.config["hostplane:idleAfter"] == "300" and alarm_periods(ws) == 5, "a route reset it"
    assert stack.config["hostplane:routed"] == "true"
    await stacks.converge(names, NO_OPTIONS)  # a provisioner `up` with no choice keeps the tenant's
    assert stack.config["hostplane:idleAfter"] == "300" and alarm_periods(ws) == 5
    assert stack.config["hostplane:routed"] == "true"


async def test_an_always_on_tenant_stays_without_an_alarm_across_routes():
    from services.resources.base import TenantOptions

    ws, names = ProgramWorkspace(), tenant_names("acme")
    stacks = stacks_on(ws)
    await stacks.converge(names, TenantOptions(idle_after_s=0))
    assert alarm_periods(ws) is None
    result = await stacks.route(names, custom_domain=None, routed=True)
    assert alarm_periods(ws) is None, "a route gave an always-on tenant the platform's default"
    assert (result.outputs["idleAfter"], result.outputs["idleAfterS"], result.outputs["idleAlarm"]) == ("0", 0, "")


async def test_a_tenant_without_a_choice_follows_the_installations_default_on_every_up():
    from services.resources.base import NO_OPTIONS

    ws, names = ProgramWorkspace(), tenant_names("acme")
    result = await stacks_on(ws).converge(names, NO_OPTIONS)
    assert "hostplane:idleAfter" not in ws.stacks[names.runtime_service].config
    assert alarm_periods(ws) == 15 and result.outputs["idleAfter"] == ""  # the platform's 900 s
    result = await stacks_on(ws, idleAfterDefault="120").route(names, custom_domain=None, routed=True)
    config = ws.stacks[names.runtime_service].config
    assert (config["hostplane:idleAfter"], config["hostplane:idleAfterDefault"]) == ("", "120")
    assert alarm_periods(ws) == 2 and result.outputs["idleAfterS"] == 120


async def test_the_idle_period_changes_on_the_tenants_stack_and_nothing_else_does():
    """AWS's half of `tenant update --idle-after` (the provisioner's StackRuntime.set_idle_after):
    an `up` of the existing stack with the new `idleAfter`, its route and edge as they were;
    None is the installation's default again, 0 always on; no stack: a permanent error."""
    from services.resources.aws.adapters import StackRuntime, TenantStackConvergence
    from services.resources.base import Outcome, PermanentError, TenantOptions

    ws, names = ProgramWorkspace(), tenant_names("acme")
    stacks = stacks_on(ws)
    runtime = StackRuntime(TenantStackConvergence(stacks))
    await runtime.register(names, names.secret, TenantOptions(idle_after_s=300))
    await stacks.route(names, custom_domain="shop.example.com", routed=True, domain_ready=True)
    stack = ws.stacks[names.runtime_service]
    assert alarm_periods(ws) == 5
    changed = await runtime.set_idle_after(names, 120)
    assert (changed.value, changed.outcome) == (names.runtime_service, Outcome.UPDATED)
    assert stack.config["hostplane:idleAfter"] == "120" and alarm_periods(ws) == 2
    assert (stack.config["hostplane:routed"], stack.config["hostplane:customDomain"]) == ("true", "shop.example.com")
    assert stack.config["hostplane:edge"] == "pooled"
    await runtime.set_idle_after(names, 0)
    assert stack.config["hostplane:idleAfter"] == "0" and alarm_periods(ws) is None
    await runtime.set_idle_after(names, None)  # the installation's again: 900 s
    assert stack.config["hostplane:idleAfter"] == "" and alarm_periods(ws) == 15
    await runtime.register(names, names.secret)  # a later provisioner `up` with no choice keeps it
    assert stack.config["hostplane:idleAfter"] == "" and alarm_periods(ws) == 15
    with pytest.raises(PermanentError, match="has no runtime stack"):
        await runtime.set_idle_after(tenant_names("ghost"), 60)
    assert tenant_names("ghost").runtime_service not in ws.stacks, "a change created no stack"
