"""The platform stack under Pulumi's in-process mocks: the bus matches the local topology,
every rule target can retry and dead-letter, roles are least-privilege, and Caddy routes
a tenant header to an SRV name."""

from __future__ import annotations

import json
from functools import lru_cache

import pytest

from contracts.tenant import tenant_names
from events.topology import topology
from infra.platform.caddy import TENANT_HEADER, caddy_config
from infra.platform.control_plane import SERVICES, Scope, permissions
from infra.platform.program import platform_program
from infra.testing import Declared, RecordingMocks, run_program

pytestmark = pytest.mark.timeout(120)

CONFIG = {"hostplane:image": "ecr/hostplane:1", "hostplane:stateBucket": "hostplane-state",
          "hostplane:cacheAdminPassword": "cache-admin-password-value", "hostplane:originVerify": "origin-verify-value",
          "hostplane:albCertificateArn": "arn:aws:acm:eu-west-1:1:certificate/alb"}


@lru_cache(maxsize=1)
def platform() -> RecordingMocks:
    return run_program(platform_program, config=CONFIG)


def of_type(typ: str) -> list[Declared]:
    return [r for r in platform().resources if r.typ == typ]


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
                 queue_arns={s: f"arn:q:{s}" for s in SERVICES}, kms_key_arn="arn:kms",
                 file_system_arn="arn:efs", platform_secret_arn="arn:secret:platform", state_bucket="state")


@pytest.mark.parametrize("service", SERVICES)
def test_each_control_plane_role_reads_only_its_own_queue(service):
    sts = permissions(service, scope())
    receive = [s for s in sts if "sqs:ReceiveMessage" in s["Action"]]
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


def test_alb_has_one_rule_admitting_only_cloudfront():
    (rule,) = of_type("aws:lb/listenerRule:ListenerRule")
    assert rule.inputs["conditions"][0]["httpHeader"]["httpHeaderName"] == "X-Origin-Verify"
    (listener,) = of_type("aws:lb/listener:Listener")
    assert listener.inputs["defaultActions"][0]["fixedResponse"]["statusCode"] == "403"


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


def test_only_builder_and_deprovisioner_mount_the_artifact_file_system():
    tasks = {t.inputs["family"]: t.inputs for t in of_type("aws:ecs/taskDefinition:TaskDefinition")}
    with_volume = {f for f, t in tasks.items() if t.get("volumes")}
    assert with_volume == {"hostplane-builder", "hostplane-deprovisioner"}
    mounters = {svc for svc in SERVICES
                if any("elasticfilesystem:ClientMount" in st["Action"] for st in permissions(svc, scope()))}
    assert mounters == {"builder", "deprovisioner"}
    volume = tasks["hostplane-builder"]["volumes"][0]["efsVolumeConfiguration"]
    assert volume["transitEncryption"] == "ENABLED" and volume["authorizationConfig"]["iam"] == "ENABLED"
