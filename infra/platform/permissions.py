"""What each control-plane task role may do: pure data, tested (tests/unit/test_infra_platform.py).

Every service reads only its own queue (and its own DLQ's depth) and publishes only to the
bus, under its own source and event types (infra/publishing.py); the API also peeks and redrives every DLQ (the dashboard). The provisioner and
deprovisioner run tenant stacks, so they manage what `infra/tenant/` declares, and only
that: ARNs carry the installation prefix wherever AWS lets the name into the ARN
(`contracts.tenant.tenant_names`); where AWS picks the id (Cloud Map services, access
points, scalable targets, distributions, certificates) the statement is conditioned on
the installation tag `infra.common.tags()` puts on everything (`aws:RequestTag` to create,
`aws:ResourceTag` afterwards). `Resource: "*"` is left only for the actions in UNSCOPABLE.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from infra.common import INSTALLATION_TAG, statement
from infra.publishing import service_publishing

SERVICES = ("api", "provisioner", "builder", "migrator", "router-config", "deprovisioner")
# Run tenant stacks (Automation API): the provisioner creates them, router-config routes
# them (services/router_config/aws.py), the deprovisioner destroys them. Any `up` deploys
# the whole tenant program, so each needs every permission the program's resources need.
STACK_DRIVERS = frozenset({"provisioner", "router-config", "deprovisioner"})
# Write releases (builder), move the live pointer (migrator), remove them (deprovisioner).
ARTIFACT_WRITERS = frozenset({"builder", "migrator", "deprovisioner"})
QUEUE_ACTIONS = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
                 "sqs:GetQueueAttributes", "sqs:GetQueueUrl"]
# core.metrics.refresh_gauges: each service's DLQ depth gauge (services.runner).
DLQ_DEPTH_ACTIONS = ["sqs:GetQueueAttributes", "sqs:GetQueueUrl"]
# events.dlq as the dashboard runs it: peek (receive, give back), redrive (send to the
# source queue, delete from the DLQ).
DLQ_ACTIONS = ["sqs:GetQueueUrl", "sqs:GetQueueAttributes", "sqs:ReceiveMessage",
               "sqs:ChangeMessageVisibility", "sqs:DeleteMessage"]
REDRIVE_ACTIONS = ["sqs:GetQueueUrl", "sqs:SendMessage"]
TENANT_CERT_REGION = "us-east-1"  # CloudFront reads viewer certificates from us-east-1 only

# Actions whose Service Authorization Reference entry lists no resource type: AWS accepts
# only `Resource: "*"` for them (a statement naming an ARN never matches them). Each says
# why it is still safe enough. Checked against the SAR (and its programmatic form,
# servicereference.us-east-1.amazonaws.com/v1/<service>/<service>.json).
UNSCOPABLE = {
    # ECS: DeregisterTaskDefinition and DescribeTaskDefinition have no resource type
    # (RegisterTaskDefinition has one, task-definition, so it is scoped by family below).
    "ecs:DeregisterTaskDefinition": "marks a revision INACTIVE; running services keep theirs",
    "ecs:DescribeTaskDefinition": "read",
    # ACM: a certificate request has no resource until it exists.
    "acm:RequestCertificate": "only with this installation's tag in the request",
    # CloudFront: the creates have no resource type. CreateDistributionWithTags (what the
    # provider calls) authorizes CreateConnectionGroup, CreateDistribution and TagResource.
    "cloudfront:CreateDistribution": "takes no condition key; the same call needs cloudfront:TagResource, "
                                     "granted only with this installation's tag in the request",
    "cloudfront:CreateConnectionGroup": "only with this installation's tag in the request",
    "cloudfront:CreateDistributionTenant": "only with this installation's tag in the request",
    "cloudfront:CreateFunction": "takes no condition key; a function runs only where a distribution "
                                 "this role manages associates it",
    "cloudfront:CreateOriginAccessControl": "creates a signing config; grants nothing by itself",
    # Cloud Map: the tagging actions have no resource type (CreateService also authorizes TagResource).
    "servicediscovery:TagResource": "only with this installation's tag in the request",
    "servicediscovery:UntagResource": "removes tags; takes only aws:TagKeys",
    "servicediscovery:ListTagsForResource": "read",
    # CloudWatch Logs: DescribeLogGroups has no resource type.
    "logs:DescribeLogGroups": "a listing (names, retention), no log events",
    # Application Auto Scaling: the Describe* calls have no resource type.
    "application-autoscaling:DescribeScalableTargets": "read",
    "application-autoscaling:DescribeScalingPolicies": "read",
}
# The UNSCOPABLE actions that take `aws:RequestTag`: granted only with this installation's
# tag in the request. Every other UNSCOPABLE action takes neither `aws:RequestTag` nor (no
# resource type) `aws:ResourceTag`: a tag condition would never match and so deny the call.
TAGGED_CREATES = frozenset({"acm:RequestCertificate", "cloudfront:CreateConnectionGroup",
                            "cloudfront:CreateDistributionTenant", "servicediscovery:TagResource"})
# Application Auto Scaling creates its ECS service-linked role the first time anyone in the
# account registers an ECS scalable target, with the caller's iam:CreateServiceLinkedRole
# (Application Auto Scaling user guide, "Service-linked roles"; ARN from its ARN reference).
SCALING_SERVICE = "ecs.application-autoscaling.amazonaws.com"
SCALING_ROLE = f"role/aws-service-role/{SCALING_SERVICE}/AWSServiceRoleForApplicationAutoScaling_ECSService"
# ARNs without the prefix and without a tag condition: the resource's id or name is AWS's and
# the resource takes no tags, so account-wide (in the region) is the narrowest AWS allows.
ACCOUNT_WIDE = {
    "origin-access-control/*": "CloudFront OACs: ids from AWS, no tags",
    "change/*": "Route 53 change ids (GetChange) from AWS, no tags",
    SCALING_ROLE: "the service-linked role: one per account, named by AWS",
}


@dataclass
class Scope:
    """ARNs and names the permissions are scoped to (one installation)."""

    account: str
    region: str
    prefix: str
    bus_arn: str
    queue_arns: dict[str, str]
    dlq_arns: dict[str, str]
    kms_key_arn: str
    file_system_arn: str
    platform_secret_arn: str
    state_bucket: str
    cluster_name: str = ""
    namespace_arn: str = ""
    kvs_arn: str = ""
    zone_id: str = ""
    base_domain: str = ""
    state_key_alias: str = ""  # the platform stack's own secrets provider (made by hand, README)

    def arn(self, service: str, resource: str, *, regional: bool = True, region: str | None = None) -> str:
        where = (region or self.region) if regional else ""
        return f"arn:aws:{service}:{where}:{self.account}:{resource}"

    @property
    def tenant_secrets(self) -> str:
        return self.arn("secretsmanager", f"secret:{self.prefix}/tenants/*")

    @property
    def tenant_buckets(self) -> list[str]:
        return [f"arn:aws:s3:::{self.prefix}-*-static", f"arn:aws:s3:::{self.prefix}-*-static/*"]

    @property
    def tenant_roles(self) -> str:
        return f"arn:aws:iam::{self.account}:role/{self.prefix}-t-*"

    @property
    def zone_arn(self) -> str:
        return f"arn:aws:route53:::hostedzone/{self.zone_id}"

    def tagged(self, key: str) -> dict[str, Any]:
        """`aws:RequestTag` (creating) or `aws:ResourceTag` (existing) is this installation."""
        return {"StringEquals": {f"aws:{key}/{INSTALLATION_TAG}": self.prefix}}


# IAM quotas (IAM user guide, "IAM and AWS STS quotas"): a role's inline policies together
# at most 10,240 characters, each customer-managed policy at most 6,144, whitespace not
# counted; 10 managed policies attached per role by default.
INLINE_LIMIT = 10_240
MANAGED_LIMIT = 6_144
# The tenant-stack permissions (~10,000 characters with real ARNs) do not fit a role's inline
# budget next to its own: they are customer-managed policies, the same three attached to every
# stack driver (STACK_MANAGED_POLICIES), while what differs per driver (tenant secrets) stays inline.
STACK_MANAGED_POLICIES = ("tenant-stacks-core", "tenant-stacks-runtime", "tenant-stacks-edge")


def policy_size(statements: list[dict[str, Any]]) -> int:
    """A document's size as IAM counts it (no whitespace)."""
    doc = json.dumps({"Version": "2012-10-17", "Statement": statements}, sort_keys=True)
    return len("".join(doc.split()))


def fitted(statements: list[dict[str, Any]], limit: int, what: str) -> str:
    """The document, or a clear error before AWS refuses it mid-`up` (LimitExceeded)."""
    size = policy_size(statements)
    if size > limit:
        raise ValueError(f"{what}: policy of {size} characters exceeds IAM's {limit}")
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, sort_keys=True)


def permissions(service: str, s: Scope) -> list[dict[str, Any]]:
    """Every statement a control-plane service's task role holds: inline and managed."""
    out = inline_permissions(service, s)
    if service in STACK_DRIVERS:
        out += [st for group in STACK_MANAGED_POLICIES for st in managed_permissions(group, s)]
    return out


def inline_permissions(service: str, s: Scope) -> list[dict[str, Any]]:
    """The task role's inline policy of one control-plane service."""
    out = [
        statement(QUEUE_ACTIONS, s.queue_arns[service], sid="OwnQueue"),
        statement(DLQ_DEPTH_ACTIONS, s.dlq_arns[service], sid="OwnDlqDepth"),
        # Only under its own source and types (infra.publishing): consumers trust the source.
        *(statement(["events:PutEvents"], s.bus_arn, sid="PublishToBus" + ("Replays" if i else ""), condition=c)
          for i, c in enumerate(service_publishing(service))),
        statement(["secretsmanager:GetSecretValue"], s.platform_secret_arn, sid="PlatformSecret"),
    ]
    read_tenant_secrets = statement(["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
                                    s.tenant_secrets, sid="ReadTenantSecrets")
    if service == "api":
        out += [read_tenant_secrets,  # `tenant env` reveals a tenant's own credentials to its owner
                statement(DLQ_ACTIONS, list(s.dlq_arns.values()), sid="DlqOperations"),
                statement(REDRIVE_ACTIONS, list(s.queue_arns.values()), sid="DlqRedrive")]
    if service in STACK_DRIVERS:
        out += [_tenant_secrets(service, s)]
    if service in ARTIFACT_WRITERS:
        # Root access: these write (or remove) every tenant's releases; runtimes only read,
        # each through its own access point.
        out += [statement(["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite",
                           "elasticfilesystem:ClientRootAccess"], s.file_system_arn, sid="WriteArtifacts")]
    if service == "builder":
        out += [statement(["s3:PutObject", "s3:DeleteObject", "s3:ListBucket"], s.tenant_buckets,
                          sid="UploadStaticAssets")]
    if service == "migrator":
        out += [read_tenant_secrets]
    return out


def managed_permissions(group: str, s: Scope) -> list[dict[str, Any]]:
    """One of the STACK_MANAGED_POLICIES: what a tenant stack (infra/tenant/) needs."""
    return {"tenant-stacks-core": _stack_core, "tenant-stacks-runtime": _runtime,
            "tenant-stacks-edge": _edge}[group](s)


def stack_permissions(service: str, s: Scope) -> list[dict[str, Any]]:
    """What a tenant stack (infra/tenant/) needs, plus its Pulumi state and secrets."""
    return [_tenant_secrets(service, s), *(st for g in STACK_MANAGED_POLICIES for st in managed_permissions(g, s))]


def _tenant_secrets(service: str, s: Scope) -> dict[str, Any]:
    # The program reads the tenant's secret (the cache password); only the provisioner
    # writes secrets and only the deprovisioner deletes them.
    write = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
    if service == "provisioner":
        # RestoreSecret: a tenant re-created while its deleted secret waits (services/resources/secret.py)
        write += ["secretsmanager:CreateSecret", "secretsmanager:PutSecretValue", "secretsmanager:TagResource",
                  "secretsmanager:RestoreSecret"]
    if service == "deprovisioner":
        write += ["secretsmanager:DeleteSecret"]
    return statement(write, s.tenant_secrets, sid="TenantSecrets")


def _stack_core(s: Scope) -> list[dict[str, Any]]:
    """Buckets, task roles, the unscopable actions, Pulumi state and secrets."""
    return [
        statement(["s3:*"], s.tenant_buckets, sid="TenantBuckets"),
        statement(["iam:CreateRole", "iam:DeleteRole", "iam:GetRole", "iam:TagRole", "iam:UntagRole",
                   "iam:PutRolePolicy", "iam:DeleteRolePolicy", "iam:GetRolePolicy", "iam:ListRolePolicies",
                   "iam:ListAttachedRolePolicies", "iam:ListInstanceProfilesForRole"],
                  s.tenant_roles, sid="TenantRoles"),
        statement(["iam:PassRole"], s.tenant_roles, sid="PassTenantRoles",
                  condition={"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}),
        statement(sorted(TAGGED_CREATES), "*", sid="UnscopableCreates", condition=s.tagged("RequestTag")),
        statement(sorted(set(UNSCOPABLE) - TAGGED_CREATES), "*", sid="Unscopable"),
        statement(["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"],
                  [f"arn:aws:s3:::{s.state_bucket}", f"arn:aws:s3:::{s.state_bucket}/*"], sid="PulumiState"),
        statement(["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"], s.kms_key_arn, sid="PulumiSecrets"),
        # The tenant program's StackReference decrypts the platform stack's secret outputs
        # (originVerify) with that stack's key; it is known by its alias only.
        statement(["kms:Decrypt"], s.arn("kms", "key/*"), sid="PlatformStackOutputs", condition={
            "ForAnyValue:StringEquals": {"kms:ResourceAliases": s.state_key_alias}}),
    ]


def _by_tag(sid: str, arns: list[str], create: list[str], manage: list[str], s: Scope,
            *, create_in: list[str] | None = None) -> list[dict[str, Any]]:
    """Two statements for resources whose ARN holds an AWS-chosen id: create only with this
    installation's tag in the request, act on them only while they carry it."""
    return [statement(create, (create_in or []) + arns, sid=f"Create{sid}", condition=s.tagged("RequestTag")),
            statement(manage, arns, sid=f"Manage{sid}", condition=s.tagged("ResourceTag"))]


def _runtime(s: Scope) -> list[dict[str, Any]]:
    """infra/tenant/runtime.py: task definition, service, log group, access point, SRV, scaling, cache user."""
    p, tags = s.prefix, ["TagResource", "UntagResource", "ListTagsForResource"]
    discovery = [s.arn("servicediscovery", "service/*")]
    access_points = [s.arn("elasticfilesystem", "access-point/*")]
    targets = [s.arn("application-autoscaling", "scalable-target/*")]
    cache_users = s.arn("elasticache", f"user:{p}-t-*")
    return [
        # RegisterTaskDefinition authorizes on task-definition (family:revision); with tags in
        # the request it also needs ecs:TagResource on it (ecs:CreateAction).
        statement([f"ecs:{a}" for a in ["RegisterTaskDefinition", *tags]], s.arn("ecs", f"task-definition/{p}-*:*"),
                  sid="TenantTaskDefinitions"),
        statement([f"ecs:{a}" for a in ["CreateService", "UpdateService", "DeleteService", "DescribeServices", *tags]],
                  s.arn("ecs", f"service/{s.cluster_name}/{p}-*"), sid="TenantServices"),
        statement([f"logs:{a}" for a in ["CreateLogGroup", "DeleteLogGroup", "PutRetentionPolicy",
                                         "ListTagsLogGroup", *tags]],
                  s.arn("logs", f"log-group:/{p}/tenants/*"), sid="TenantLogGroups"),
        # GetOperation (UpdateService is asynchronous) authorizes on the namespace or the service.
        statement(["servicediscovery:GetNamespace", "servicediscovery:GetOperation"], s.namespace_arn,
                  sid="PlatformNamespace"),
        # Cloud Map's Tag/Untag/ListTagsForResource have no resource type: UNSCOPABLE.
        *_by_tag("TenantDiscovery", discovery, ["servicediscovery:CreateService"],
                 [f"servicediscovery:{a}" for a in ["GetService", "UpdateService", "DeleteService", "GetOperation"]],
                 s, create_in=[s.namespace_arn]),  # CreateService authorizes on the namespace too
        statement(["elasticfilesystem:CreateAccessPoint", "elasticfilesystem:DescribeAccessPoints"],
                  s.file_system_arn, sid="PlatformFileSystem"),
        *_by_tag("TenantAccessPoints", access_points, ["elasticfilesystem:TagResource"],
                 [f"elasticfilesystem:{a}" for a in ["DeleteAccessPoint", "DescribeAccessPoints", *tags]], s),
        *_by_tag("TenantScaling", targets,
                 ["application-autoscaling:RegisterScalableTarget", "application-autoscaling:TagResource"],
                 [f"application-autoscaling:{a}" for a in ["RegisterScalableTarget", "DeregisterScalableTarget",
                                                           "PutScalingPolicy", "DeleteScalingPolicy", *tags]], s),
        statement(["iam:CreateServiceLinkedRole"], f"arn:aws:iam::{s.account}:{SCALING_ROLE}", sid="ScalingRole",
                  condition={"StringEquals": {"iam:AWSServiceName": SCALING_SERVICE}}),
        # Target tracking: Application Auto Scaling makes the two alarms with the caller's
        # CloudWatch permissions (its user guide); it names them TargetTracking-<resource id>-….
        # Scale to zero: each tenant's own idle alarm, tagged (infra/tenant/runtime.py
        # idle_alarm_name). One statement for both: the managed policy is near its size limit.
        statement([f"cloudwatch:{a}" for a in ["PutMetricAlarm", "DescribeAlarms", "DeleteAlarms", *tags]],
                  [s.arn("cloudwatch", f"alarm:TargetTracking-service/{s.cluster_name}/{p}-*"),
                   s.arn("cloudwatch", f"alarm:{p}-idle-*")], sid="Alarms"),
        statement([f"elasticache:{a}" for a in ["CreateUser", "ModifyUser", "DeleteUser", "DescribeUsers",
                                                "AddTagsToResource", "RemoveTagsFromResource",
                                                "ListTagsForResource"]], cache_users, sid="TenantCacheUsers"),
        statement(["elasticache:ModifyUserGroup", "elasticache:DescribeUserGroups"],
                  [s.arn("elasticache", f"usergroup:{p}-tenants"), cache_users], sid="TenantCacheGroup"),
    ]


def _edge(s: Scope) -> list[dict[str, Any]]:
    """infra/tenant/edge.py and stack.py: functions, distribution or distribution tenant, KVS
    entries, DNS records, custom-domain certificates."""
    p, cf = s.prefix, "cloudfront"
    distributions = [s.arn(cf, "distribution/*", regional=False), s.arn(cf, "distribution-tenant/*", regional=False)]
    certificates = [s.arn("acm", "certificate/*", region=TENANT_CERT_REGION)]
    return [
        # CreateFunction has no resource type (UNSCOPABLE). The SAR does not list `function`
        # for the tagging actions yet, but CreateFunction takes Tags and the provider tags them.
        statement([f"{cf}:{a}" for a in ["UpdateFunction", "PublishFunction", "DeleteFunction", "DescribeFunction",
                                         "GetFunction", "TagResource", "UntagResource", "ListTagsForResource"]],
                  s.arn(cf, f"function/{p}-*", regional=False), sid="TenantFunctions"),
        # CreateDistribution(WithTags) and CreateDistributionTenant have no resource type
        # (UNSCOPABLE); the TagResource they also authorize is on the new resource's ARN.
        *_by_tag("TenantDistributions", distributions, [f"{cf}:TagResource"],
                 [f"{cf}:{a}" for a in ["GetDistribution", "GetDistributionConfig", "UpdateDistribution",
                                        "DeleteDistribution", "GetDistributionTenant", "UpdateDistributionTenant",
                                        "DeleteDistributionTenant", "TagResource", "UntagResource",
                                        "ListTagsForResource"]], s),
        statement([f"{cf}:GetOriginAccessControl", f"{cf}:UpdateOriginAccessControl",
                   f"{cf}:DeleteOriginAccessControl"],
                  s.arn(cf, "origin-access-control/*", regional=False), sid="TenantOriginAccess"),
        statement(["cloudfront-keyvaluestore:PutKey", "cloudfront-keyvaluestore:DeleteKey",
                   "cloudfront-keyvaluestore:GetKey", "cloudfront-keyvaluestore:DescribeKeyValueStore"],
                  s.kvs_arn, sid="PooledHosts"),
        # Tenant host names only, in the platform's zone (custom-domain zones are not wired yet).
        statement(["route53:ChangeResourceRecordSets"], s.zone_arn, sid="TenantRecords", condition={
            "ForAllValues:StringLike": {"route53:ChangeResourceRecordSetsNormalizedRecordNames": [
                f"*.{s.base_domain}"]}}),
        statement(["route53:ListResourceRecordSets", "route53:GetHostedZone"], s.zone_arn, sid="PlatformZone"),
        statement(["route53:GetChange"], "arn:aws:route53:::change/*", sid="RecordChanges"),
        *_by_tag("TenantCertificates", certificates, ["acm:AddTagsToCertificate"],
                 [f"acm:{a}" for a in ["DescribeCertificate", "DeleteCertificate", "AddTagsToCertificate",
                                       "RemoveTagsFromCertificate", "ListTagsForCertificate"]], s),
    ]
