"""The platform stack under Pulumi's in-process mocks: the bus matches the local topology,
every rule target can retry and dead-letter, roles are least-privilege, Caddy routes
a tenant header to an SRV name, and the API answers at api.<base domain> through the ALB."""

from __future__ import annotations

import ipaddress
import json
import os

import httpx
import pulumi
import pytest

from contracts.tenant import InvalidTenantId, tenant_names
from events.topology import topology
from infra.common import INSTALLATION_TAG
from infra.platform.caddy import TENANT_HEADER, caddy_config
from infra.platform.control_plane import SECRET_KEYS, SERVICES, Scope, permissions
from infra.platform.edge import API_HEALTH_PATH, API_LABEL, ORIGIN_LABEL, api_domain, origin_domain
from infra.platform.network import API_PORT
from infra.common import statement
from infra.platform.permissions import (ACCOUNT_WIDE, MANAGED_LIMIT, SCALING_ROLE, SCALING_SERVICE,
                                        STACK_DRIVERS, STACK_MANAGED_POLICIES, TAGGED_CREATES, UNSCOPABLE, fitted,
                                        inline_permissions, managed_permissions, policy_size)
from tests.support.infra_stacks import ACM_VALIDATIONS, CONFIG, of_type, platform, run_platform
from tests.support.pulumi_mocks import ACCOUNT, REGION, Declared

pytestmark = pytest.mark.timeout(120)


def by_name(typ: str) -> dict[str, dict]:
    return {r.inputs.get("name", r.name): r.inputs for r in of_type(typ)}


def as_list(v) -> list:
    return v if isinstance(v, list) else [v]


def test_queues_and_rules_match_the_local_topology():
    top = topology()
    queues = by_name("aws:sqs/queue:Queue")
    assert set(queues) == {q.name for q in top.queues} | {q.dlq_name for q in top.queues}
    for spec in top.queues:
        q, dlq = queues[spec.name], queues[spec.dlq_name]
        assert q["visibilityTimeoutSeconds"] == spec.visibility_timeout_s
        assert q["messageRetentionSeconds"] == spec.retention_s
        assert dlq["messageRetentionSeconds"] == spec.dlq_retention_s > spec.retention_s
        redrive = json.loads(q["redrivePolicy"])
        assert redrive["maxReceiveCount"] == spec.max_receives
        assert redrive["deadLetterTargetArn"].endswith(spec.dlq_name)
    rules = by_name("aws:cloudwatch/eventRule:EventRule")
    assert {name: r["eventPattern"] for name, r in rules.items()} == {r.name: r.pattern() for r in top.rules}
    assert all(r["eventBusName"] == top.bus_name for r in rules.values())
    (archive,) = of_type("aws:cloudwatch/eventArchive:EventArchive")
    assert archive.inputs["eventPattern"] == top.archive_pattern()


def test_every_rule_target_has_a_retry_policy_and_the_services_dlq():
    top = topology()
    targets = {t.inputs["rule"]: t.inputs for t in of_type("aws:cloudwatch/eventTarget:EventTarget")}
    assert set(targets) == {r.name for r in top.rules}
    for rule in top.rules:
        target = targets[rule.name]
        assert target["retryPolicy"]["maximumRetryAttempts"] > 0
        assert target["retryPolicy"]["maximumEventAgeInSeconds"] > 0
        assert target["arn"].endswith(top.queue(rule.service).name)
        assert target["deadLetterConfig"]["arn"].endswith(top.queue(rule.service).dlq_name)


def test_queue_policies_let_only_their_rule_send():
    policies = of_type("aws:sqs/queuePolicy:QueuePolicy")
    assert len(policies) == 2 * len(topology().rules)
    for p in policies:
        (st,) = json.loads(p.inputs["policy"])["Statement"]
        assert st["Principal"] == {"Service": "events.amazonaws.com"} and st["Action"] == ["sqs:SendMessage"]
        assert st["Condition"]["ArnEquals"]["aws:SourceArn"].startswith("arn:aws:cloudwatch:")


def test_no_iam_statement_allows_everything_on_everything():
    checked = 0
    for r in platform().resources:
        for key in ("policy", "assumeRolePolicy"):
            if isinstance(r.inputs.get(key), str):
                for st in json.loads(r.inputs[key])["Statement"]:
                    checked += 1
                    if st["Effect"] == "Allow":
                        wild_action = any(a in ("*", "*:*") for a in as_list(st["Action"]))
                        assert not (wild_action and "*" in as_list(st.get("Resource", []))), r.name
    assert checked > 20


def scope() -> Scope:
    return Scope(account="1", region="eu-west-1", prefix="hostplane", bus_arn="arn:bus",
                 queue_arns={s: f"arn:q:{s}" for s in SERVICES}, dlq_arns={s: f"arn:dlq:{s}" for s in SERVICES},
                 kms_key_arn="arn:kms", file_system_arn="arn:efs", platform_secret_arn="arn:secret:platform",
                 state_bucket="state")


@pytest.mark.parametrize("service", SERVICES)
def test_each_control_plane_role_reads_only_its_own_queue(service):
    sts = permissions(service, scope())
    receive = [s for s in sts if "sqs:ReceiveMessage" in s["Action"] and s.get("Sid") != "DlqOperations"]
    assert [as_list(s["Resource"]) for s in receive] == [[f"arn:q:{service}"]]
    for st in sts:
        assert not ("*" in st["Action"] or "s3:*" in st["Action"] and st["Resource"] == "*")
        if st["Resource"] == "*":  # only actions AWS cannot scope, named one by one
            assert all("*" not in a.split(":")[1] or a.endswith("Describe*") for a in st["Action"])
    secrets = [r for s in sts for a in s["Action"] if a.startswith("secretsmanager:") for r in as_list(s["Resource"])]
    assert all(r in ("arn:secret:platform", "arn:aws:secretsmanager:eu-west-1:1:secret:hostplane/tenants/*")
               for r in secrets)


def test_control_plane_roles_are_declared_per_service():
    roles = by_name("aws:iam/role:Role")
    assert {f"hostplane-cp-{s}" for s in SERVICES} <= set(roles)
    services = [r for r in of_type("aws:ecs/service:Service") if r.inputs.get("launchType") == "FARGATE"]
    assert len(services) == len(SERVICES) + 1  # + Caddy


def test_caddy_routes_the_tenant_header_to_the_tenants_srv_name():
    config = caddy_config(prefix="hostplane", namespace="hostplane.internal")
    routes = config["apps"]["http"]["servers"]["edge"]["routes"]
    tenant = next(r for r in routes if r.get("match") and "header_regexp" in r["match"][0])
    upstreams = tenant["handle"][0]["dynamic_upstreams"]
    assert upstreams["source"] == "srv"
    name = upstreams["name"].replace(f"{{http.request.header.{TENANT_HEADER}}}", "acme")
    assert name == f"{tenant_names('acme').runtime_service}.hostplane.internal"
    import re

    pattern = re.compile(tenant["match"][0]["header_regexp"][TENANT_HEADER]["pattern"])
    assert pattern.match("acme") and not pattern.match("acme.evil.com") and not pattern.match("../x")
    assert routes[-1]["handle"][0]["status_code"] == 404  # no tenant header, no upstream
    # the deployed task carries exactly this configuration
    (caddy_task,) = [t for t in of_type("aws:ecs/taskDefinition:TaskDefinition") if t.inputs["family"] == "hostplane-caddy"]
    env = json.loads(caddy_task.inputs["containerDefinitions"])[0]["environment"]
    assert json.loads(env[0]["value"]) == config


def mock_arn(service: str, name: str) -> str:
    """The ARN the mock in tests.support.pulumi_mocks gives the resource `name`."""
    return f"arn:aws:{service}:{REGION}:{ACCOUNT}:{name}"


def rules() -> dict[str, dict]:
    return {r.name: r.inputs for r in of_type("aws:lb/listenerRule:ListenerRule")}


def target_group(name: str) -> Declared:
    (tg,) = [t for t in of_type("aws:lb/targetGroup:TargetGroup") if t.name == name]
    return tg


def test_alb_forwards_tenant_traffic_only_with_the_origin_verify_header():
    (listener,) = of_type("aws:lb/listener:Listener")
    assert listener.inputs["defaultActions"][0]["fixedResponse"]["statusCode"] == "403"
    assert [a["type"] for a in listener.inputs["defaultActions"]] == ["fixed-response"]
    assert set(rules()) == {"edge-from-cloudfront", "edge-api"}  # fixed rules only, none per tenant
    tenant = rules()["edge-from-cloudfront"]
    assert tenant["conditions"] == [{"httpHeader": {"httpHeaderName": "X-Origin-Verify",
                                                    "values": ["origin-verify-value"]}}]
    assert tenant["actions"] == [{"type": "forward", "targetGroupArn": mock_arn("lb", "edge-caddy")}]


def test_fleet_is_a_capacity_provider_with_managed_scaling():
    (cp,) = of_type("aws:ecs/capacityProvider:CapacityProvider")
    asg = cp.inputs["autoScalingGroupProvider"]
    assert asg["managedScaling"]["status"] == "ENABLED" and asg["managedTerminationProtection"] == "ENABLED"
    (ccp,) = of_type("aws:ecs/clusterCapacityProviders:ClusterCapacityProviders")
    assert ccp.inputs["defaultCapacityProviderStrategies"][0]["capacityProvider"] == cp.inputs["name"]


def test_data_servers_are_serverless_aurora_and_valkey_with_rbac():
    (aurora,) = of_type("aws:rds/cluster:Cluster")
    assert aurora.inputs["engine"] == "aurora-postgresql" and aurora.inputs["storageEncrypted"] is True
    assert aurora.inputs["serverlessv2ScalingConfiguration"]["minCapacity"] > 0
    assert aurora.inputs["manageMasterUserPassword"] is True and "masterPassword" not in aurora.inputs
    (writer,) = of_type("aws:rds/clusterInstance:ClusterInstance")
    assert writer.inputs["instanceClass"] == "db.serverless"
    (valkey,) = of_type("aws:elasticache/replicationGroup:ReplicationGroup")
    assert valkey.inputs["engine"] == "valkey" and valkey.inputs["transitEncryptionEnabled"] is True
    assert len(valkey.inputs["userGroupIds"]) == 1
    default = next(u for u in of_type("aws:elasticache/user:User") if u.inputs["userName"] == "default")
    assert default.inputs["accessString"].startswith("off")


def test_database_and_cache_admit_only_runtimes_and_tenant_admins():
    group_id = {r.inputs["tags"]["role"]: f"{r.name}-id" for r in of_type("aws:ec2/securityGroup:SecurityGroup")}
    rules = of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    allowed = {group_id["runtime"], group_id["tenant-admin"]}
    for target in (group_id["database"], group_id["cache"]):
        sources = {r.inputs.get("referencedSecurityGroupId") for r in rules if r.inputs["securityGroupId"] == target}
        assert sources == allowed, target
        assert not any("cidrIpv4" in r.inputs for r in rules if r.inputs["securityGroupId"] == target)


def test_artifact_file_system_is_encrypted_with_a_mount_target_per_private_subnet():
    (fs,) = of_type("aws:efs/fileSystem:FileSystem")
    assert fs.inputs["encrypted"] is True
    private = {f"{s.name}-id" for s in of_type("aws:ec2/subnet:Subnet") if s.inputs["tags"].get("tier") == "private"}
    assert {m.inputs["subnetId"] for m in of_type("aws:efs/mountTarget:MountTarget")} == private
    assert len(private) >= 2


def test_pooled_edge_is_one_multitenant_distribution_reading_the_tenant_from_a_kvs():
    (dist,) = of_type("aws:cloudfront/multitenantDistribution:MultitenantDistribution")
    assert {o["id"] for o in dist.inputs["origins"]} == {"alb", "static"}
    (kvs,) = of_type("aws:cloudfront/keyValueStore:KeyValueStore")
    request = next(f for f in of_type("aws:cloudfront/function:Function") if f.inputs.get("keyValueStoreAssociations"))
    assert "kvs.get(host)" in request.inputs["code"]
    assert request.inputs["keyValueStoreAssociations"] == [f"arn:aws:cloudfront:eu-west-1:123456789012:{kvs.name}"]
    assert not of_type("aws:cloudfront/distribution:Distribution")


def test_secrets_never_appear_in_plain_resource_inputs():
    for r in platform().resources:
        if r.typ in ("aws:elasticache/user:User", "aws:lb/listenerRule:ListenerRule",
                     "aws:cloudfront/multitenantDistribution:MultitenantDistribution"):
            continue  # these receive the value on purpose (as a Pulumi secret)
        blob = json.dumps(r.inputs, default=str)
        assert "cache-admin-password-value" not in blob and "origin-verify-value" not in blob, r.name


def test_only_the_artifact_writers_mount_the_artifact_file_system():
    # builder publishes releases, migrator moves the live pointer (current.json), deprovisioner removes them
    tasks = {t.inputs["family"]: t.inputs for t in of_type("aws:ecs/taskDefinition:TaskDefinition")}
    with_volume = {f for f, t in tasks.items() if t.get("volumes")}
    assert with_volume == {"hostplane-builder", "hostplane-migrator", "hostplane-deprovisioner"}
    mounters = {svc for svc in SERVICES
                if any("elasticfilesystem:ClientMount" in st["Action"] for st in permissions(svc, scope()))}
    assert mounters == {"builder", "migrator", "deprovisioner"}
    volume = tasks["hostplane-builder"]["volumes"][0]["efsVolumeConfiguration"]
    assert volume["transitEncryption"] == "ENABLED" and volume["authorizationConfig"]["iam"] == "ENABLED"


# --- the control plane starts on AWS --------------------------------------------------------------

def task(service: str) -> dict:
    (t,) = [t.inputs for t in of_type("aws:ecs/taskDefinition:TaskDefinition")
            if t.inputs["family"] == f"hostplane-{service}"]
    return t


def container(service: str) -> dict:
    (c,) = json.loads(task(service)["containerDefinitions"])
    return c


def environment(service: str) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(service)["environment"]}


@pytest.mark.parametrize("service", sorted(STACK_DRIVERS))
def test_stack_drivers_start_with_every_tenant_stack_setting(service, monkeypatch):
    from core.settings import Settings
    from services.resources.aws.wiring import AwsTarget

    env = environment(service)
    for name in [n for n in os.environ if n.startswith("HOSTPLANE_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    target, settings = AwsTarget(), Settings()  # validates: the variable names are AwsTarget's
    assert target.model_fields_set == set(AwsTarget.model_fields), "every setting from the task, none defaulted"
    (alias,) = of_type("aws:kms/alias:Alias")
    bucket = CONFIG["hostplane:stateBucket"]
    assert target.model_dump() == {
        "state_url": f"s3://{bucket}/hostplane", "kms_alias": alias.inputs["name"],
        "platform_stack": "organization/hostplane/test", "tenant_image": CONFIG["hostplane:tenantImage"],
        "zone_id": CONFIG["hostplane:zoneId"], "base_domain": CONFIG["hostplane:baseDomain"],
        "wildcard_certificate_arn": CONFIG["hostplane:wildcardCertificateArn"], "edge": "pooled"}
    assert alias.inputs["name"] == "alias/hostplane"  # the secrets provider the README tells operators
    assert (settings.target, settings.name_prefix, settings.region) == ("aws", "hostplane", "eu-west-1")
    stack = target.stack_settings(settings)
    assert stack.secrets_provider == "awskms://alias/hostplane?region=eu-west-1"
    cache = {"HOSTPLANE_VALKEY_URL"} if service != "router-config" else set()  # router-config sweeps no keys
    assert {s["name"] for s in container(service)["secrets"]} == {"HOSTPLANE_CONTROL_DSN"} | cache
    assert container(service)["image"] == CONFIG["hostplane:image"]


@pytest.mark.parametrize("service", sorted(set(SERVICES) - STACK_DRIVERS))
def test_other_services_get_only_what_they_start_with(service):
    env = environment(service)
    assert not [n for n in env if n.startswith("HOSTPLANE_AWS_")]
    assert {"HOSTPLANE_TARGET": "aws", "HOSTPLANE_NAME_PREFIX": "hostplane", "HOSTPLANE_REGION": "eu-west-1"}.items() \
        <= env.items()
    secrets = {s["name"]: s["valueFrom"] for s in container(service)["secrets"]}
    assert set(secrets) == {"HOSTPLANE_CONTROL_DSN"} | ({"HOSTPLANE_API_TOKEN"} if service == "api" else set())
    platform_secret = next(r for r in of_type("aws:secretsmanager/secret:Secret")
                           if r.inputs["name"] == "hostplane/platform/control")
    arn = f"arn:aws:secretsmanager:eu-west-1:123456789012:{platform_secret.name}"
    assert secrets == {name: f"{arn}:{SECRET_KEYS[name]}::" for name in secrets}


def test_stack_drivers_have_room_for_pulumi_and_the_aws_provider():
    for service in SERVICES:
        t = task(service)
        if service in STACK_DRIVERS:
            assert (int(t["cpu"]), int(t["memory"])) == (1024, 4096)
            assert t["ephemeralStorage"]["sizeInGib"] >= 30
        else:
            assert (int(t["cpu"]), int(t["memory"])) == (512, 1024) and "ephemeralStorage" not in t


# --- IAM: the tenant-stack permissions are scoped to the installation -------------------------------

def stack_scope(prefix: str = "hpx") -> Scope:
    return Scope(account="1", region="eu-west-1", prefix=prefix, bus_arn="arn:bus",
                 queue_arns={s: f"arn:q:{s}" for s in SERVICES}, dlq_arns={s: f"arn:dlq:{s}" for s in SERVICES},
                 kms_key_arn="arn:kms", file_system_arn="arn:efs",
                 platform_secret_arn="arn:secret:platform", state_bucket="state", cluster_name=prefix,
                 namespace_arn="arn:namespace", kvs_arn="arn:kvs", zone_id="Z0PLATFORM",
                 base_domain="apps.example.com", state_key_alias=f"alias/{prefix}-state")


def platform_singletons(s: Scope) -> set[str]:
    """The platform's own resources, each by its exact ARN."""
    return {s.bus_arn, s.kms_key_arn, s.file_system_arn, s.platform_secret_arn, s.namespace_arn, s.kvs_arn,
            s.zone_arn, f"arn:aws:s3:::{s.state_bucket}", f"arn:aws:s3:::{s.state_bucket}/*", *s.queue_arns.values(),
            *s.dlq_arns.values()}


def installation_tagged(st: dict, prefix: str) -> bool:
    """Conditioned on the installation tag, or (KMS) on the installation's key alias."""
    equals = st.get("Condition", {}).get("StringEquals", {})
    aliases = st.get("Condition", {}).get("ForAnyValue:StringEquals", {}).get("kms:ResourceAliases")
    return (any(equals.get(f"aws:{key}/{INSTALLATION_TAG}") == prefix for key in ("RequestTag", "ResourceTag"))
            or aliases == f"alias/{prefix}-state")


@pytest.mark.parametrize("service", sorted(STACK_DRIVERS))
def test_only_actions_aws_cannot_scope_are_granted_on_every_resource(service):
    assert all(why for why in UNSCOPABLE.values()), "each unscopable action says why it is acceptable"
    on_everything = [a for st in permissions(service, stack_scope()) if st["Resource"] == "*" for a in st["Action"]]
    assert on_everything and set(on_everything) <= set(UNSCOPABLE)


@pytest.mark.parametrize("service", sorted(STACK_DRIVERS))
def test_every_scoped_arn_belongs_to_the_installation(service):
    s = stack_scope("hpx")
    for st in permissions(service, s):
        if st["Resource"] == "*":
            continue
        for arn in as_list(st["Resource"]):
            assert ("hpx" in arn or arn in platform_singletons(s) or installation_tagged(st, "hpx")
                    or any(arn.endswith(f":{part}") for part in ACCOUNT_WIDE)), (st.get("Sid"), arn)
            assert "hostplane" not in arn, "the prefix comes from the scope, never hard-coded"


def tag_key(st: dict) -> str | None:
    """"RequestTag"/"ResourceTag" when the statement is conditioned on the installation tag."""
    keys = [k for k in st.get("Condition", {}).get("StringEquals", {}) if k.endswith(f"/{INSTALLATION_TAG}")]
    return keys[0].split(":")[1].split("/")[0] if keys else None


@pytest.mark.parametrize("service", sorted(STACK_DRIVERS))
def test_actions_without_a_resource_type_are_granted_on_every_resource_only(service):
    # The SAR gives them no resource type: a statement naming ARNs never matches them.
    for st in permissions(service, stack_scope()):
        if st["Resource"] != "*":
            assert not set(st["Action"]) & set(UNSCOPABLE), (st.get("Sid"), set(st["Action"]) & set(UNSCOPABLE))


@pytest.mark.parametrize("service", sorted(STACK_DRIVERS))
def test_no_tag_condition_on_an_action_that_cannot_match_it(service):
    # Without a resource type there is no aws:ResourceTag, and only TAGGED_CREATES take
    # aws:RequestTag: on any other action the condition would never hold, i.e. deny the call.
    assert TAGGED_CREATES <= set(UNSCOPABLE)
    sts = permissions(service, stack_scope())
    for st in sts:
        key = tag_key(st)
        if key == "ResourceTag":
            assert not set(st["Action"]) & set(UNSCOPABLE), st.get("Sid")
        if key == "RequestTag":
            assert not set(st["Action"]) & (set(UNSCOPABLE) - TAGGED_CREATES), st.get("Sid")
    tagged = next(st for st in sts if set(st["Action"]) == TAGGED_CREATES)
    assert (tagged["Resource"], tag_key(tagged)) == ("*", "RequestTag")
    # CloudFront's CreateDistribution takes no condition key at all: its tag check is the
    # TagResource that CreateDistributionWithTags authorizes on the new distribution.
    create = [st for st in sts if "cloudfront:CreateDistribution" in st["Action"]]
    assert [(st["Resource"], tag_key(st)) for st in create] == [("*", None)]


def test_the_provider_can_create_tagged_distributions_tenants_and_discovery_services():
    sts = permissions("provisioner", stack_scope("hpx"))

    def granted(action: str) -> list[tuple]:
        return [(tuple(as_list(st["Resource"])), tag_key(st)) for st in sts if action in st["Action"]]

    dist = ("arn:aws:cloudfront::1:distribution/*", "arn:aws:cloudfront::1:distribution-tenant/*")
    # CreateDistributionWithTags → CreateConnectionGroup, CreateDistribution, TagResource (SAR operations table)
    assert granted("cloudfront:CreateConnectionGroup") == [(("*",), "RequestTag")]
    assert (dist, "RequestTag") in granted("cloudfront:TagResource")
    # CreateDistributionTenant → CreateDistributionTenant, TagResource
    assert granted("cloudfront:CreateDistributionTenant") == [(("*",), "RequestTag")]
    # Cloud Map CreateService → CreateService (namespace, service), TagResource (no resource type)
    assert granted("servicediscovery:CreateService") == [
        (("arn:namespace", "arn:aws:servicediscovery:eu-west-1:1:service/*"), "RequestTag")]
    assert granted("servicediscovery:TagResource") == [(("*",), "RequestTag")]
    # resource types the SAR does give: scoped, not on "*"
    assert granted("ecs:RegisterTaskDefinition") == [(("arn:aws:ecs:eu-west-1:1:task-definition/hpx-*:*",), None)]
    assert set(granted("servicediscovery:GetOperation")) == {
        (("arn:namespace",), None), (("arn:aws:servicediscovery:eu-west-1:1:service/*",), "ResourceTag")}


def test_scaling_may_create_only_its_own_service_linked_role_and_tenant_alarms():
    sts = {st.get("Sid"): st for st in permissions("provisioner", stack_scope("hpx"))}
    role = sts["ScalingRole"]
    assert role["Action"] == ["iam:CreateServiceLinkedRole"]
    assert role["Resource"] == f"arn:aws:iam::1:{SCALING_ROLE}"
    assert role["Condition"] == {"StringEquals": {"iam:AWSServiceName": SCALING_SERVICE}}
    assert not [st for st in sts.values() if "iam:CreateServiceLinkedRole" in st["Action"] and st is not role]
    assert sts["Alarms"]["Resource"] == ["arn:aws:cloudwatch:eu-west-1:1:alarm:TargetTracking-service/hpx/hpx-*",
                                         "arn:aws:cloudwatch:eu-west-1:1:alarm:hpx-idle-*"]


def test_the_stack_drivers_may_manage_exactly_the_idle_alarm_a_tenant_stack_declares():
    """infra/tenant/runtime.py names the alarm; the roles that run tenant stacks may put,
    describe, delete and tag that name and no other of the account's alarms."""
    from fnmatch import fnmatch

    from infra.tenant.runtime import idle_alarm_name

    arn = f"arn:aws:cloudwatch:eu-west-1:1:alarm:{idle_alarm_name('hpx', 'acme')}"
    for service in ("provisioner", "router-config", "deprovisioner"):
        sts = permissions(service, stack_scope("hpx"))
        allowed = {a for st in sts for a in st["Action"]
                   if any(fnmatch(arn, r) for r in ([st["Resource"]] if isinstance(st["Resource"], str) else st["Resource"]))}
        assert {"cloudwatch:PutMetricAlarm", "cloudwatch:DescribeAlarms", "cloudwatch:DeleteAlarms",
                "cloudwatch:TagResource", "cloudwatch:ListTagsForResource"} <= allowed, service
        other = "arn:aws:cloudwatch:eu-west-1:1:alarm:billing-alarm"
        assert not [st for st in sts if "cloudwatch:DeleteAlarms" in st["Action"] and any(
            fnmatch(other, r) for r in ([st["Resource"]] if isinstance(st["Resource"], str) else st["Resource"]))]


def deployed_statements(service: str) -> tuple[list[dict], list[list[dict]]]:
    """The role's inline statements and each customer-managed policy attached to it."""
    inline = next(r for r in of_type("aws:iam/rolePolicy:RolePolicy") if r.inputs["role"] == f"cp-{service}-id")
    policies = {mock_arn("iam", r.name): json.loads(r.inputs["policy"])["Statement"]
                for r in of_type("aws:iam/policy:Policy")}
    attached = [policies[a.inputs["policyArn"]] for a in of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
                if a.inputs["role"] == f"hostplane-cp-{service}"]
    return json.loads(inline.inputs["policy"])["Statement"], attached


def test_the_deployed_stack_driver_policy_is_the_scoped_one():
    roles = {r.name: r for r in of_type("aws:iam/role:Role")}
    assert roles["cp-provisioner"].inputs["name"] == "hostplane-cp-provisioner"
    inline, attached = deployed_statements("provisioner")
    sts = inline + [st for doc in attached for st in doc]
    assert {a for st in sts if st["Resource"] == "*" for a in st["Action"]} <= set(UNSCOPABLE)
    records = next(st for st in sts if st.get("Sid") == "TenantRecords")
    assert records["Resource"] == "arn:aws:route53:::hostedzone/Z0PLATFORM"
    names = records["Condition"]["ForAllValues:StringLike"]["route53:ChangeResourceRecordSetsNormalizedRecordNames"]
    assert names == ["*.apps.example.com"]
    services = next(st for st in sts if st.get("Sid") == "TenantServices")
    assert services["Resource"] == "arn:aws:ecs:eu-west-1:123456789012:service/hostplane/hostplane-*"


def test_every_resource_carries_its_installation_tag():
    tagged = [r for r in platform().resources if isinstance(r.inputs.get("tags"), dict)]
    assert len(tagged) > 20
    assert all(r.inputs["tags"][INSTALLATION_TAG] == "hostplane" for r in tagged)


# --- the edge: CloudFront reaches the ALB by a name its certificate covers ----------------------------

def test_pooled_distribution_reaches_the_alb_by_its_origin_name():
    (dist,) = of_type("aws:cloudfront/multitenantDistribution:MultitenantDistribution")
    alb = next(o for o in dist.inputs["origins"] if o["id"] == "alb")
    assert alb["domainName"] == "edge.apps.example.com" == origin_domain("apps.example.com")
    assert alb["customOriginConfigs"][0]["originProtocolPolicy"] == "https-only"


def test_origin_name_is_an_alias_to_the_alb_with_a_validated_certificate():
    (lb,) = of_type("aws:lb/loadBalancer:LoadBalancer")
    records = {r.inputs["name"]: r.inputs for r in of_type("aws:route53/record:Record")}
    origin = records["edge.apps.example.com"]
    assert origin["zoneId"] == "Z0PLATFORM" and origin["type"] == "A"
    assert origin["aliases"][0]["name"] == f"{lb.name}.elb.example.aws"
    (cert,) = of_type("aws:acm/certificate:Certificate")
    assert (cert.inputs["domainName"], cert.inputs["validationMethod"]) == ("edge.apps.example.com", "DNS")
    (validation,) = of_type("aws:acm/certificateValidation:CertificateValidation")
    (listener,) = of_type("aws:lb/listener:Listener")
    assert listener.inputs["certificateArn"] == validation.inputs["certificateArn"]
    with pytest.raises(InvalidTenantId):  # no tenant can ever own the origin's host name
        tenant_names(ORIGIN_LABEL)


def test_the_albs_certificate_covers_the_api_name_validated_in_the_platform_zone():
    (cert,) = of_type("aws:acm/certificate:Certificate")
    assert cert.inputs["subjectAlternativeNames"] == ["api.apps.example.com"] == [api_domain("apps.example.com")]
    records = {r.inputs["name"]: r.inputs for r in of_type("aws:route53/record:Record")}
    # one validation record per name, each the one ACM gave for that name (whatever the order)
    for option in ACM_VALIDATIONS["domainValidationOptions"]:
        record = records[option["resourceRecordName"]]
        assert record["records"] == [option["resourceRecordValue"]] and record["zoneId"] == "Z0PLATFORM"
    (validation,) = of_type("aws:acm/certificateValidation:CertificateValidation")
    assert len(validation.inputs["validationRecordFqdns"]) == 2


def test_the_api_name_is_an_alias_to_the_alb_in_the_platform_zone():
    (lb,) = of_type("aws:lb/loadBalancer:LoadBalancer")
    records = {r.inputs["name"]: r.inputs for r in of_type("aws:route53/record:Record")}
    api = records["api.apps.example.com"]
    assert api["zoneId"] == "Z0PLATFORM" and api["type"] == "A"
    assert api["aliases"][0]["name"] == f"{lb.name}.elb.example.aws"
    with pytest.raises(InvalidTenantId):  # no tenant record can take it
        tenant_names(API_LABEL)


def test_the_platform_exports_every_output_a_tenant_stack_reads():
    from infra.platform.program import PlatformStack
    from infra.tenant.program import PLATFORM_OUTPUTS

    exported: list[str] = []
    run_platform(lambda: exported.extend(PlatformStack("hostplane", pulumi.Config("hostplane")).outputs))
    assert set(PLATFORM_OUTPUTS.values()) <= set(exported)
    assert PLATFORM_OUTPUTS["origin_domain"] == "originDomain"


def test_caddy_runs_with_its_own_execution_role():
    (caddy_task,) = [t for t in of_type("aws:ecs/taskDefinition:TaskDefinition")
                     if t.inputs["family"] == "hostplane-caddy"]
    control = [t for t in of_type("aws:ecs/taskDefinition:TaskDefinition") if t.inputs["family"] == "hostplane-api"]
    assert caddy_task.inputs["executionRoleArn"] != control[0].inputs["executionRoleArn"]


# --- the API: api.<base domain> → ALB → the api tasks -----------------------------------------------

def api_service() -> dict:
    (svc,) = [r.inputs for r in of_type("aws:ecs/service:Service") if r.name == "cp-api"]
    return svc


def group_ids() -> dict[str, str]:
    return {r.inputs["tags"]["role"]: f"{r.name}-id" for r in of_type("aws:ec2/securityGroup:SecurityGroup")}


def ingress(group: str) -> list[dict]:
    return [r.inputs for r in of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
            if r.inputs["securityGroupId"] == group_ids()[group]]


def test_the_api_host_is_routed_to_the_api_target_group_before_any_other_rule():
    api = rules()["edge-api"]
    assert api["conditions"] == [{"hostHeader": {"values": ["api.apps.example.com"]}}]  # no origin-verify header
    assert api["actions"] == [{"type": "forward", "targetGroupArn": mock_arn("lb", "edge-api")}]
    assert all(api["priority"] < other["priority"] for name, other in rules().items() if name != "edge-api")
    (listener,) = of_type("aws:lb/listener:Listener")
    assert api["listenerArn"] == mock_arn("lb", listener.name)


def test_the_api_target_group_checks_the_apis_health_endpoint_by_ip():
    tg = target_group("edge-api").inputs
    assert (tg["targetType"], tg["protocol"], tg["port"]) == ("ip", "HTTP", API_PORT)
    assert tg["healthCheck"] == {"path": API_HEALTH_PATH, "matcher": "200"}
    (vpc,) = of_type("aws:ec2/vpc:Vpc")
    assert tg["vpcId"] == f"{vpc.name}-id"


async def test_the_health_check_path_answers_200_without_a_token_even_while_the_database_is_away():
    from services.api.app import create_app
    from services.api.http import ApiContext

    class Pool:
        async def fetchval(self, query: str) -> int:
            raise ConnectionRefusedError("the database is away")

    app = create_app(ApiContext(pool=Pool(), edge_port=0, name_prefix="hostplane", secrets=None), "t" * 40)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://api.apps.example.com") as c:
        assert (await c.get(API_HEALTH_PATH)).status_code == 200
        assert (await c.get("/healthz")).status_code == 503  # the deeper check still tells
        assert (await c.get("/v1/tenants")).status_code == 401  # the rest wants the bearer token


def test_the_api_service_registers_with_its_target_group_on_the_container_port():
    svc = api_service()
    assert svc["loadBalancers"] == [{"targetGroupArn": mock_arn("lb", "edge-api"), "containerName": "api",
                                     "containerPort": API_PORT}]
    assert svc["healthCheckGracePeriodSeconds"] > 0
    assert container("api")["name"] == "api"
    assert container("api")["portMappings"] == [{"containerPort": API_PORT, "protocol": "tcp"}]
    others = [r.inputs for r in of_type("aws:ecs/service:Service") if r.name.startswith("cp-") and r.name != "cp-api"]
    assert len(others) == len(SERVICES) - 1
    assert not any(o.get("loadBalancers") for o in others)
    assert not any(container(s)["portMappings"] for s in SERVICES if s != "api")


def test_the_api_tasks_admit_only_the_alb_on_the_api_port():
    ids = group_ids()
    assert ingress("api") == [{"securityGroupId": ids["api"], "ipProtocol": "tcp", "fromPort": API_PORT,
                               "toPort": API_PORT, "referencedSecurityGroupId": ids["alb"],
                               "description": "api-from-alb"}]
    groups = api_service()["networkConfiguration"]["securityGroups"]
    assert ids["api"] in groups
    assert not any(ids["api"] in r.inputs["networkConfiguration"]["securityGroups"]
                   for r in of_type("aws:ecs/service:Service") if r.name != "cp-api")
    # the api task is a control task, not a tenant admin: it does not reach the database or cache
    assert ids["tenant-admin"] not in groups and ids["runtime"] not in groups


def test_the_alb_admits_cloudfront_and_api_clients_on_https_only():
    rules_ = ingress("alb")
    assert {(r["fromPort"], r["toPort"]) for r in rules_} == {(443, 443)}
    assert [r["cidrIpv4"] for r in rules_ if "cidrIpv4" in r] == ["0.0.0.0/0"]  # default: anywhere
    # the other one: CloudFront's origin-facing prefix list (a lookup the mock leaves empty)
    assert [r["description"] for r in rules_ if "cidrIpv4" not in r] == ["alb-from-cloudfront"]


def test_operators_can_narrow_who_reaches_the_api():
    narrowed = run_platform(**{"hostplane:apiAllowedCidrs": '["198.51.100.0/24", "203.0.113.7"]'})
    alb = next(f"{r.name}-id" for r in narrowed.resources
               if r.typ == "aws:ec2/securityGroup:SecurityGroup" and r.inputs["tags"]["role"] == "alb")
    cidrs = [r.inputs["cidrIpv4"] for r in narrowed.resources
             if r.typ == "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
             and r.inputs["securityGroupId"] == alb and "cidrIpv4" in r.inputs]
    assert cidrs == ["198.51.100.0/24", "203.0.113.7/32"]
    with pytest.raises(ValueError, match="apiAllowedCidrs"):
        run_platform(**{"hostplane:apiAllowedCidrs": '"198.51.100.0/24"'})


def test_the_api_container_listens_on_every_interface_on_the_mapped_port(monkeypatch):
    from core.settings import Settings

    for name in [n for n in os.environ if n.startswith("HOSTPLANE_")]:
        monkeypatch.delenv(name)
    for name, value in environment("api").items():
        monkeypatch.setenv(name, value)
    settings = Settings()  # what services/api/server.py binds on
    assert (settings.host, settings.api_port) == ("0.0.0.0", API_PORT)
    assert settings.public_domain == CONFIG["hostplane:baseDomain"]  # https tenant URLs; no custom domain under it
    assert not any("HOSTPLANE_HOST" in environment(s) for s in SERVICES if s != "api")


async def test_the_api_believes_forwarded_headers_from_the_albs_subnets_only(monkeypatch):
    import uvicorn
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    public = [s.inputs["cidrBlock"] for s in of_type("aws:ec2/subnet:Subnet") if s.inputs["tags"]["tier"] == "public"]
    assert environment("api")["FORWARDED_ALLOW_IPS"].split(",") == public
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", environment("api")["FORWARDED_ALLOW_IPS"])
    seen: list[tuple[str, str]] = []

    async def app(scope, receive, send):
        seen.append((scope["scheme"], scope["client"][0]))

    proxy = ProxyHeadersMiddleware(app, uvicorn.Config(app).forwarded_allow_ips)  # as server.py's uvicorn reads it
    headers = [(b"x-forwarded-proto", b"https"), (b"x-forwarded-for", b"198.51.100.9")]
    alb_node, elsewhere = str(ipaddress.ip_network(public[1])[17]), "10.40.64.5"  # a public, a private subnet
    for client in (alb_node, elsewhere):
        await proxy({"type": "http", "scheme": "http", "client": (client, 4711), "headers": headers}, None, None)
    # the dashboard sees https from the ALB (Secure cookie, Origin check), the client's own address
    assert seen == [("https", "198.51.100.9"), ("http", elsewhere)]


def test_the_platform_exports_the_api_url():
    from infra.platform.program import PlatformStack

    exported: dict = {}
    run_platform(lambda: exported.update(PlatformStack("hostplane", pulumi.Config("hostplane")).outputs))
    assert exported["apiUrl"] == "https://api.apps.example.com"


# --- each service reads its own DLQ's depth (core.metrics.refresh_gauges) ------------------------

def readable(sts: list[dict]) -> set[str]:
    return {r for st in sts if "sqs:GetQueueAttributes" in st["Action"] for r in as_list(st["Resource"])}


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_reads_the_depth_of_its_own_dlq_and_of_no_other_services_queue(service):
    sts = permissions(service, scope())
    dlq = next(st for st in sts if st.get("Sid") == "OwnDlqDepth")
    assert (dlq["Resource"], dlq["Action"]) == (f"arn:dlq:{service}", ["sqs:GetQueueAttributes", "sqs:GetQueueUrl"])
    dashboard = {"DlqOperations"} if service == "api" else set()  # see the next test
    own = readable([st for st in sts if st.get("Sid") not in dashboard])
    assert own == {f"arn:q:{service}", f"arn:dlq:{service}"}


def test_the_api_peeks_and_redrives_every_dlq_and_nothing_more():
    sts = {st.get("Sid"): st for st in permissions("api", scope())}
    # events.dlq: get_queue_url, get_queue_attributes, receive/change visibility (peek), delete (redrive)
    assert set(sts["DlqOperations"]["Resource"]) == {f"arn:dlq:{s}" for s in SERVICES}
    assert set(sts["DlqOperations"]["Action"]) == {"sqs:GetQueueUrl", "sqs:GetQueueAttributes", "sqs:ReceiveMessage",
                                                   "sqs:ChangeMessageVisibility", "sqs:DeleteMessage"}
    # redrive sends each message back to its source queue
    assert set(sts["DlqRedrive"]["Resource"]) == {f"arn:q:{s}" for s in SERVICES}
    assert set(sts["DlqRedrive"]["Action"]) == {"sqs:GetQueueUrl", "sqs:SendMessage"}
    for service in set(SERVICES) - {"api"}:
        for st in permissions(service, scope()):
            assert "sqs:SendMessage" not in st["Action"]
            assert not ("sqs:ReceiveMessage" in st["Action"] and "arn:dlq:" in str(st["Resource"]))


def test_the_deployed_policies_name_each_services_own_dlq():
    top = topology()
    policies = {r.inputs["role"]: json.loads(r.inputs["policy"])["Statement"]
                for r in of_type("aws:iam/rolePolicy:RolePolicy") if r.inputs["role"].startswith("cp-")}
    for service in SERVICES:
        sts = {st.get("Sid"): st for st in policies[f"cp-{service}-id"]}
        spec = top.queue(service)
        assert sts["OwnDlqDepth"]["Resource"] == mock_arn("sqs", spec.dlq_name)
        assert sts["OwnQueue"]["Resource"] == mock_arn("sqs", spec.name)


# --- who may say what on the bus: each role only under its own source (issue 14, part 6) ----------

def publish_entry(event, tenant_id: str, producer: str, replay: bool = False):
    import uuid

    from contracts.envelope import Envelope
    from events.publisher import PublishEntry

    env = Envelope.new(event, tenant_id=tenant_id, producer=producer)
    return PublishEntry.from_envelope(env.model_copy(update={"replay_id": uuid.uuid4()}) if replay else env)


def may_publish(sts: list[dict], e) -> bool:
    from tests.support.pulumi_mocks import condition_allows, put_events_context

    return any("events:PutEvents" in st["Action"] and "arn:bus" in as_list(st["Resource"])
               and condition_allows(st.get("Condition"), put_events_context(e.source, e.detail_type))
               for st in sts if st["Effect"] == "Allow")


@pytest.mark.parametrize("service", SERVICES)
def test_each_control_plane_role_publishes_only_its_own_source_and_types(service):
    from contracts.catalog import producers_of
    from events.outbox import relay_sources

    sts = permissions(service, scope())
    puts = [st for st in sts if "events:PutEvents" in st["Action"]]
    assert all(st["Action"] == ["events:PutEvents"] and st["Resource"] == "arn:bus" for st in puts)
    granted = {}
    for st in puts:
        cond = st["Condition"]
        op = next(k for k in cond if k.startswith("ForAllValues:"))
        (source,) = cond[op]["events:source"]
        granted[source] = set(cond["StringEquals"]["events:detail-type"])
        assert cond["Null"] == {"events:source": "false", "events:detail-type": "false"}
    own = {e.event_type for e in producers_of(service)}
    runtime = {e.event_type for e in producers_of("reloader")}
    # the api also republishes replays of runtime events (no control-plane service produces them)
    assert granted == ({"hostplane.api": own, "hostplane.runtime.*": runtime} if service == "api"
                       else {f"hostplane.{service}": own})
    assert sorted(granted) == [p.replace("%", "*") for p in relay_sources(service)], "what its relay claims"


def test_a_forged_control_plane_event_is_refused_to_every_other_role():
    from contracts.events_v1 import ReleaseActivated, TenantDeletionRequested, TenantProvisioned

    deletion = TenantDeletionRequested.model_construct()
    provisioned = TenantProvisioned.model_construct()
    release = ReleaseActivated(version=1, sha256="a" * 64, swap_ms=1, health_ms=1)
    roles = {s: permissions(s, scope()) for s in SERVICES}
    for service, sts in roles.items():
        assert may_publish(sts, publish_entry(deletion, "acme", "api")) == (service == "api"), service
        assert may_publish(sts, publish_entry(provisioned, "acme", "provisioner")) == (service == "provisioner")
        # a replay keeps the original source: the producer's own relay republishes it
        assert may_publish(sts, publish_entry(provisioned, "acme", "provisioner", replay=True)) == (
            service == "provisioner")
        # a runtime event's replay: only the API, which records them (no control-plane producer)
        assert may_publish(sts, publish_entry(release, "acme", "reloader", replay=True)) == (service == "api")
    # not even the API may put a control-plane type under a runtime source, or the reverse
    assert not may_publish(roles["api"], publish_entry(deletion, "acme", "reloader"))
    assert not may_publish(roles["api"], publish_entry(release, "acme", "builder"))


def test_the_deployed_roles_put_events_only_with_their_source_condition():
    policies = {r.inputs["role"]: json.loads(r.inputs["policy"])["Statement"]
                for r in of_type("aws:iam/rolePolicy:RolePolicy")}
    puts = 0
    for role, sts in policies.items():
        for st in sts:
            actions = as_list(st["Action"])
            if any(a in ("*", "events:*", "events:Put*", "events:PutEvents") for a in actions):
                puts += 1
                assert actions == ["events:PutEvents"], role
                service = role.removeprefix("cp-").removesuffix("-id")
                assert "events:source" in json.dumps(st["Condition"]), role
                if st.get("Sid") == "PublishToBus":
                    assert f'"hostplane.{service}"' in json.dumps(st["Condition"]), role
    assert puts == len(SERVICES) + 1  # + the API's runtime replays


def realistic_scope() -> Scope:
    """ARNs as long as a real installation's (issue 15: sizes measured with realistic ARNs)."""
    a, r, p = ACCOUNT, "ap-southeast-2", "hostplane"
    q = lambda n: f"arn:aws:sqs:{r}:{a}:{n}"  # noqa: E731
    return Scope(account=a, region=r, prefix=p, bus_arn=f"arn:aws:events:{r}:{a}:event-bus/{p}",
                 queue_arns={s: q(f"{p}-{s}") for s in SERVICES}, dlq_arns={s: q(f"{p}-{s}-dlq") for s in SERVICES},
                 kms_key_arn=f"arn:aws:kms:{r}:{a}:key/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
                 file_system_arn=f"arn:aws:elasticfilesystem:{r}:{a}:file-system/fs-0123456789abcdef0",
                 platform_secret_arn=f"arn:aws:secretsmanager:{r}:{a}:secret:{p}/platform/control-AbCdEf",
                 state_bucket=f"{p}-state-{a}-{r}", cluster_name=p,
                 namespace_arn=f"arn:aws:servicediscovery:{r}:{a}:namespace/ns-abcdefghijklmnop",
                 kvs_arn=f"arn:aws:cloudfront::{a}:key-value-store/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
                 zone_id="Z0123456789ABCDEFGHIJ", base_domain="apps.example.com", state_key_alias=f"alias/{p}-state")


def inline_size(service: str) -> int:
    return policy_size(inline_permissions(service, realistic_scope()))


@pytest.mark.parametrize("service", [s for s in SERVICES if s not in STACK_DRIVERS])
def test_role_policies_fit_iams_inline_limit(service):
    assert inline_size(service) <= 10_240 // 2, inline_size(service)


@pytest.mark.parametrize("service", sorted(STACK_DRIVERS))
def test_stack_driver_policies_fit_iams_inline_limit(service):
    """Issue 15 item 3: with the tenant-stack permissions inline, 10,491 to 10,770 characters."""
    assert inline_size(service) <= 10_240 // 2, inline_size(service)


@pytest.mark.parametrize("group", STACK_MANAGED_POLICIES)
def test_each_tenant_stack_managed_policy_fits_iams_managed_limit_with_room(group):
    size = policy_size(managed_permissions(group, realistic_scope()))
    assert size <= 6_144 * 0.8, size  # room for a longer prefix, cluster name or domain


@pytest.mark.parametrize("service", sorted(STACK_DRIVERS))
def test_the_stack_drivers_hold_every_tenant_stack_permission_through_inline_and_managed_policies(service):
    inline, attached = deployed_statements(service)
    assert len(attached) == len(STACK_MANAGED_POLICIES) <= 10  # IAM: 10 managed policies per role by default
    deployed = inline + [st for doc in attached for st in doc]
    canon = lambda sts: sorted(json.dumps(st, sort_keys=True) for st in sts)  # noqa: E731
    assert canon(deployed) == canon(permissions(service, deployed_scope()))
    assert not [st for st in inline if st.get("Sid") in ("TenantRecords", "TenantServices", "Unscopable")]


@pytest.mark.parametrize("service", sorted(set(SERVICES) - STACK_DRIVERS))
def test_other_roles_get_no_managed_tenant_stack_policy(service):
    assert deployed_statements(service)[1] == []


def deployed_scope() -> Scope:
    """The Scope the mocks' ARNs make (tests.support.pulumi_mocks)."""
    q = {s: mock_arn("sqs", topology().queue(s).name) for s in SERVICES}
    d = {s: mock_arn("sqs", topology().queue(s).dlq_name) for s in SERVICES}
    return Scope(ACCOUNT, REGION, "hostplane", mock_arn("cloudwatch", "bus-bus"), q, d,
                 mock_arn("kms", "secrets-key"), mock_arn("efs", "artifacts-efs"),
                 mock_arn("secretsmanager", "secrets-control"), "hostplane-state", cluster_name="hostplane",
                 namespace_arn=mock_arn("servicediscovery", "edge-ns"),
                 kvs_arn=mock_arn("cloudfront", "pooled-tenants"), zone_id="Z0PLATFORM",
                 base_domain="apps.example.com", state_key_alias="alias/hostplane-state")


def test_a_policy_over_iams_limit_fails_the_program_before_aws_does():
    big = [statement(["s3:GetObject"], f"arn:aws:s3:::bucket-{i}/*") for i in range(200)]
    with pytest.raises(ValueError, match="exceeds IAM's 6144"):
        fitted(big, MANAGED_LIMIT, "x")
    assert json.loads(fitted(big[:2], MANAGED_LIMIT, "x"))["Statement"] == big[:2]


# --- issue 15: what a first `pulumi up` needs ---------------------------------------------------------

def waits_for(typ: str, name: str) -> set[tuple[str, str]]:
    return platform().dependencies[(typ, name)]


def test_every_ecs_service_behind_the_alb_waits_for_the_rule_that_forwards_to_its_target_group():
    """Item 4: ECS refuses a target group no listener (rule) forwards to yet."""
    services = [r for r in of_type("aws:ecs/service:Service") if r.inputs.get("loadBalancers")]
    assert {r.name for r in services} == {"edge-caddy", "cp-api"}
    rules = {r.name: r for r in of_type("aws:lb/listenerRule:ListenerRule")}
    for svc in services:
        (tg_arn,) = {lb["targetGroupArn"] for lb in svc.inputs["loadBalancers"]}
        forwarding = {n for n, r in rules.items() if any(a.get("targetGroupArn") == tg_arn for a in r.inputs["actions"])}
        assert forwarding, svc.name
        assert {("aws:lb/listenerRule:ListenerRule", n) for n in forwarding} <= waits_for(
            "aws:ecs/service:Service", svc.name), svc.name


def test_every_member_of_the_valkey_user_group_authenticates_with_a_password():
    """Item 7: a user group for the valkey engine holds only password or IAM users (ElastiCache
    RBAC); `default` stays, disabled (`off`), with a password no one is given."""
    (group,) = of_type("aws:elasticache/userGroup:UserGroup")
    assert group.inputs["engine"] == "valkey"
    users = {u.inputs["userId"]: u.inputs for u in of_type("aws:elasticache/user:User")}
    members = [users[uid] for uid in group.inputs["userIds"]]
    assert {u["userName"] for u in members} == {"default", "hostplane-admin"}
    for u in members:
        assert u["authenticationMode"]["type"] in ("password", "iam"), u["userName"]
        if u["authenticationMode"]["type"] == "password":
            assert all(16 <= len(p) <= 128 for p in u["authenticationMode"]["passwords"])
    default = next(u for u in members if u["userName"] == "default")
    assert default["accessString"].split()[:2] == ["off", "-@all"]
    assert "cache-admin-password-value" not in json.dumps(default)


def test_the_execution_role_may_decrypt_the_platform_secret_it_injects():
    """Item 8: the secret is encrypted with the platform key; ECS's agent reads it with the
    execution role, which needs kms:Decrypt on that key (through Secrets Manager only)."""
    (secret,) = [r for r in of_type("aws:secretsmanager/secret:Secret")
                 if r.inputs["name"] == "hostplane/platform/control"]
    key_arn = secret.inputs["kmsKeyId"]
    assert key_arn == mock_arn("kms", "secrets-key")
    sts = [st for r in of_type("aws:iam/rolePolicy:RolePolicy") if r.inputs["role"] == "cp-execution-id"
           for st in json.loads(r.inputs["policy"])["Statement"]]
    reads = [st for st in sts if "secretsmanager:GetSecretValue" in as_list(st["Action"])]
    assert [as_list(st["Resource"]) for st in reads] == [[mock_arn("secretsmanager", "secrets-control")]]
    (decrypt,) = [st for st in sts if "kms:Decrypt" in as_list(st["Action"])]
    assert as_list(decrypt["Action"]) == ["kms:Decrypt"] and as_list(decrypt["Resource"]) == [key_arn]
    assert decrypt["Condition"] == {"StringEquals": {"kms:ViaService": f"secretsmanager.{REGION}.amazonaws.com"}}


def pooled_distribution() -> dict:
    (dist,) = of_type("aws:cloudfront/multitenantDistribution:MultitenantDistribution")
    return dist.inputs


def test_the_pooled_static_origin_is_the_buckets_regional_endpoint():
    """Item 11: the global s3.amazonaws.com name answers 307 outside us-east-1 until DNS
    catches up (up to a day); the dedicated edge already uses the regional name."""
    static = next(o for o in pooled_distribution()["origins"] if o["id"] == "static")
    assert static["domainName"] == f"hostplane-{{{{tenant}}}}-static.s3.{REGION}.amazonaws.com"


def test_the_pooled_edge_sends_the_origin_its_own_host_name_like_the_dedicated_one():
    """Item 12: with the viewer's Host, CloudFront would ask the ALB for the tenant's host name,
    which the ALB's certificate (edge.<base domain>) does not cover."""
    from infra.tenant.edge import ALL_VIEWER_EXCEPT_HOST  # noqa: F401  (the dedicated edge's managed policy)

    behavior = pooled_distribution()["defaultCacheBehavior"]
    assert behavior["originRequestPolicyId"] == "Managed-AllViewerExceptHostHeader-id"


def test_the_tenants_cache_user_group_cannot_be_replaced_or_rewritten_by_a_platform_update():
    """Item 14: tenant users join by association (their own stacks); the group's own member
    list is ignored after creation, and a replacement (new group: every tenant user detached)
    or deletion needs the protection lifted first."""
    (group,) = of_type("aws:elasticache/userGroup:UserGroup")
    opts = platform().options[("aws:elasticache/userGroup:UserGroup", group.name)]
    assert opts["ignoreChanges"] == ["userIds"]
    assert opts["protect"] is True


def test_the_runbooks_cache_password_is_one_elasticache_and_a_url_accept():
    """Item 16: base64 has / + =: ElastiCache refuses / (and " @), the rediss:// URL in the
    platform secret breaks on / and @; the runbook makes hex, the program refuses the rest."""
    import re
    import subprocess
    from pathlib import Path

    from infra.platform.data import check_cache_password

    readme = (Path(__file__).resolve().parents[2] / "infra" / "README.md").read_text()
    (line,) = [ln for ln in readme.splitlines() if "hostplane:cacheAdminPassword" in ln and "config set" in ln]
    command = re.search(r'"\$\((openssl [^)]*)\)"', line).group(1)
    for _ in range(20):
        check_cache_password(subprocess.run(command.split(), capture_output=True, text=True, check=True).stdout.strip())
    for bad in ("short", "a" * 129, "abcdefghijklmnop/q", 'abcdefghijklmnop"q', "abcdefghijklmnop@q", "abcd efghijklmnopq"):
        with pytest.raises(ValueError, match="cacheAdminPassword"):
            check_cache_password(bad)
    with pytest.raises(ValueError, match="cacheAdminPassword"):
        run_platform(**{"hostplane:cacheAdminPassword": "k8Zl1/Qm3r+Hc0aFJ9w2sTq5Yx4Vb7Nn=="})


def test_no_wildcard_of_one_installation_matches_another_installations_names():
    """Item 17: `hostplane-*-static` and `role/hostplane-t-*` also match an installation whose
    prefix starts with `hostplane-` (hostplane-staging, hostplane-t): prefixes hold no hyphen, so
    `<prefix>-*` names exactly one installation's resources."""
    from fnmatch import fnmatchcase

    from infra.common import check_prefix

    ours = [r for st in permissions("provisioner", stack_scope("hostplane")) for r in as_list(st["Resource"])]
    for other in ("hostplane-staging", "hostplane-t", "hostplane2", "hostplanex", "hostpla"):
        try:
            check_prefix(other)
        except ValueError:
            continue
        n = tenant_names("acme", prefix=other, base_domain="other.example.com")
        s = stack_scope(other)
        theirs = [f"arn:aws:s3:::{n.bucket}", f"arn:aws:s3:::{n.bucket}/index.html",
                  f"arn:aws:iam::{s.account}:role/{n.task_role}",
                  s.arn("ecs", f"task-definition/{n.runtime_service}:1"),
                  s.arn("ecs", f"service/{other}/{n.runtime_service}"), s.arn("logs", f"log-group:/{other}/tenants/acme"),
                  s.arn("elasticache", f"user:{other}-{n.cache_user}"), s.arn("cloudfront", f"function/{other}-acme-req",
                                                                           regional=False),
                  s.arn("secretsmanager", f"secret:{n.secret}-AbCdEf")]
        assert not [(t, o) for t in theirs for o in ours if o != "*" and fnmatchcase(t, o)], other
    for bad in ("hostplane-staging", "Hostplane", "1hostplane", "hostplane_x", "a" * 17, ""):
        with pytest.raises(ValueError, match="hostplane:prefix"):
            check_prefix(bad)
    with pytest.raises(ValueError, match="hostplane:prefix"):
        run_platform(**{"hostplane:prefix": "hostplane-staging"})


@pytest.mark.parametrize("service", sorted(STACK_DRIVERS))
def test_a_fresh_stack_driver_task_decrypts_with_the_secrets_provider_recorded_in_state(service):
    """Item 18: `create_stack` passes --secrets-provider, but a task that only selects an existing
    stack has no Pulumi.<stack>.yaml; without PULUMI_FALLBACK_TO_STATE_SECRETS_MANAGER the CLI
    then makes a default (passphrase) secrets manager for a DIY backend and fails. The variable
    reaches the CLI: the Automation API runs it with the task's environment (os.environ)."""
    assert environment(service)["PULUMI_FALLBACK_TO_STATE_SECRETS_MANAGER"] == "true"
    for other in set(SERVICES) - STACK_DRIVERS:
        assert not [k for k in environment(other) if k.startswith("PULUMI_")]
