"""The control-plane services as ECS services on Fargate, each with its own least-privilege
task role, and the platform's KMS key and secrets.

Permissions are declared per service in `permissions()` (pure data, tested): every
service reads only its own queue and publishes only to the bus; what else it may touch
is scoped by the installation prefix (tenant secrets, buckets, roles), never `*` on `*`.
Actions AWS cannot scope to a resource (e.g. cloudfront:CreateDistribution) are listed
one by one with `Resource: "*"`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.common import assume_role, child, policy_json, statement, tags

SERVICES = ("api", "provisioner", "builder", "migrator", "router-config", "deprovisioner")
# Create databases and cache users: these tasks carry the tenant-admin security group.
TENANT_ADMINS = frozenset({"provisioner", "migrator", "deprovisioner"})
ARTIFACT_WRITERS = frozenset({"builder", "deprovisioner"})  # mount EFS (publish / remove releases)
QUEUE_ACTIONS = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
                 "sqs:GetQueueAttributes", "sqs:GetQueueUrl"]
# What a tenant stack manages (provisioner: create/update; deprovisioner: destroy).
STACK_ACTIONS_UNSCOPED = [
    "ecs:RegisterTaskDefinition", "ecs:DeregisterTaskDefinition", "ecs:DescribeTaskDefinition",
    "ecs:CreateService", "ecs:UpdateService", "ecs:DeleteService", "ecs:DescribeServices", "ecs:TagResource",
    "servicediscovery:CreateService", "servicediscovery:DeleteService", "servicediscovery:GetService",
    "servicediscovery:UpdateService", "servicediscovery:TagResource", "servicediscovery:GetNamespace",
    "elasticfilesystem:CreateAccessPoint", "elasticfilesystem:DeleteAccessPoint",
    "elasticfilesystem:DescribeAccessPoints", "elasticfilesystem:TagResource",
    "application-autoscaling:RegisterScalableTarget", "application-autoscaling:DeregisterScalableTarget",
    "application-autoscaling:PutScalingPolicy", "application-autoscaling:DeleteScalingPolicy",
    "application-autoscaling:Describe*", "application-autoscaling:TagResource",
    "cloudfront:CreateDistribution", "cloudfront:UpdateDistribution", "cloudfront:DeleteDistribution",
    "cloudfront:GetDistribution", "cloudfront:TagResource", "cloudfront:CreateFunction",
    "cloudfront:UpdateFunction", "cloudfront:PublishFunction", "cloudfront:DeleteFunction",
    "cloudfront:DescribeFunction", "cloudfront:GetFunction", "cloudfront:CreateOriginAccessControl",
    "cloudfront:DeleteOriginAccessControl", "cloudfront:GetOriginAccessControl",
    "cloudfront:CreateDistributionTenant", "cloudfront:UpdateDistributionTenant",
    "cloudfront:DeleteDistributionTenant", "cloudfront:GetDistributionTenant",
    "cloudfront-keyvaluestore:PutKey", "cloudfront-keyvaluestore:DeleteKey",
    "cloudfront-keyvaluestore:DescribeKeyValueStore", "cloudfront-keyvaluestore:GetKey",
    "route53:ChangeResourceRecordSets", "route53:GetChange", "route53:ListResourceRecordSets",
    "acm:RequestCertificate", "acm:DescribeCertificate", "acm:DeleteCertificate", "acm:AddTagsToCertificate",
    "acm:ListTagsForCertificate",
    "elasticache:CreateUser", "elasticache:ModifyUser", "elasticache:DeleteUser", "elasticache:DescribeUsers",
    "elasticache:ModifyUserGroup", "elasticache:DescribeUserGroups", "elasticache:AddTagsToResource",
    "logs:CreateLogGroup", "logs:DeleteLogGroup", "logs:PutRetentionPolicy", "logs:TagResource",
    "logs:DescribeLogGroups",
]


@dataclass
class Scope:
    """ARNs and name patterns the permissions are scoped to."""

    account: str
    region: str
    prefix: str
    bus_arn: str
    queue_arns: dict[str, str]
    kms_key_arn: str
    file_system_arn: str
    platform_secret_arn: str
    state_bucket: str
    extra: dict[str, Any] = field(default_factory=dict)

    def arn(self, service: str, resource: str, *, regional: bool = True) -> str:
        return f"arn:aws:{service}:{self.region if regional else ''}:{self.account}:{resource}"

    @property
    def tenant_secrets(self) -> str:
        return self.arn("secretsmanager", f"secret:{self.prefix}/tenants/*")

    @property
    def tenant_buckets(self) -> list[str]:
        return [f"arn:aws:s3:::{self.prefix}-*-static", f"arn:aws:s3:::{self.prefix}-*-static/*"]

    @property
    def tenant_roles(self) -> str:
        return f"arn:aws:iam::{self.account}:role/{self.prefix}-t-*"


def permissions(service: str, s: Scope) -> list[dict[str, Any]]:
    """The task role statements of one control-plane service."""
    out = [
        statement(QUEUE_ACTIONS, s.queue_arns[service], sid="OwnQueue"),
        statement(["events:PutEvents"], s.bus_arn, sid="PublishToBus"),
        statement(["secretsmanager:GetSecretValue"], s.platform_secret_arn, sid="PlatformSecret"),
    ]
    read_tenant_secrets = statement(["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
                                    s.tenant_secrets, sid="ReadTenantSecrets")
    if service == "api":
        out += [read_tenant_secrets,  # `tenant env` reveals a tenant's own credentials to its owner
                statement(["sqs:ListQueues", "sqs:GetQueueAttributes", "sqs:StartMessageMoveTask"],
                          list(s.queue_arns.values()), sid="DlqOperations")]
    if service in ("provisioner", "deprovisioner"):
        out += _stack_permissions(service, s)
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
    if service == "router-config":
        out += [statement(["cloudfront-keyvaluestore:PutKey", "cloudfront-keyvaluestore:DeleteKey",
                           "cloudfront-keyvaluestore:DescribeKeyValueStore"],
                          s.arn("cloudfront", "key-value-store/*", regional=False), sid="PooledRoutes"),
                statement(["route53:ChangeResourceRecordSets", "route53:ListResourceRecordSets"],
                          "arn:aws:route53:::hostedzone/*", sid="TenantRecords")]
    return out


def _stack_permissions(service: str, s: Scope) -> list[dict[str, Any]]:
    write = ["secretsmanager:CreateSecret", "secretsmanager:PutSecretValue", "secretsmanager:TagResource",
             "secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
    if service == "deprovisioner":
        write += ["secretsmanager:DeleteSecret"]
    return [
        statement(write, s.tenant_secrets, sid="TenantSecrets"),
        statement(["s3:*"], s.tenant_buckets, sid="TenantBuckets"),
        statement(["iam:CreateRole", "iam:DeleteRole", "iam:GetRole", "iam:TagRole", "iam:PutRolePolicy",
                   "iam:DeleteRolePolicy", "iam:GetRolePolicy", "iam:ListRolePolicies",
                   "iam:ListAttachedRolePolicies", "iam:ListInstanceProfilesForRole"],
                  s.tenant_roles, sid="TenantRoles"),
        statement(["iam:PassRole"], s.tenant_roles, sid="PassTenantRoles",
                  condition={"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}),
        statement(STACK_ACTIONS_UNSCOPED, "*", sid="TenantStackResources"),
        statement(["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"],
                  [f"arn:aws:s3:::{s.state_bucket}", f"arn:aws:s3:::{s.state_bucket}/*"], sid="PulumiState"),
        statement(["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"], s.kms_key_arn, sid="PulumiSecrets"),
    ]


@dataclass
class ControlPlaneArgs:
    cluster_arn: pulumi.Input[str]
    subnet_ids: list[pulumi.Input[str]]
    control_security_group_id: pulumi.Input[str]
    admin_security_group_id: pulumi.Input[str]
    bus_arn: pulumi.Input[str]
    queue_arns: dict[str, pulumi.Input[str]]
    file_system_arn: pulumi.Input[str]
    file_system_id: pulumi.Input[str]
    image: pulumi.Input[str]
    state_bucket: str
    prefix: str = "hostplane"


class Secrets(pulumi.ComponentResource):
    """The platform KMS key (secrets, Pulumi state secrets provider, databases) and the
    secret holding the control plane's admin addresses (filled in after the first deploy)."""

    def __init__(self, name: str, prefix: str, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("hostplane:platform:Secrets", name, None, opts)
        t = tags("secrets")
        self.key = aws.kms.Key(f"{name}-key", description=f"{prefix} platform key", enable_key_rotation=True,
                               deletion_window_in_days=30, tags=t, opts=child(self))
        aws.kms.Alias(f"{name}-alias", name=f"alias/{prefix}", target_key_id=self.key.key_id, opts=child(self))
        self.platform_secret = aws.secretsmanager.Secret(
            f"{name}-control", name=f"{prefix}/platform/control", kms_key_id=self.key.arn,
            description="HOSTPLANE_CONTROL_DSN and HOSTPLANE_VALKEY_URL (JSON)", tags=t, opts=child(self))
        self.register_outputs({"kms_key_arn": self.key.arn, "platform_secret_arn": self.platform_secret.arn})


class ControlPlane(pulumi.ComponentResource):
    def __init__(self, name: str, args: ControlPlaneArgs, secrets: Secrets,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("hostplane:platform:ControlPlane", name, None, opts)
        t = tags("control-plane")
        ident = aws.get_caller_identity_output()
        region = aws.get_region_output()
        self.execution_role = aws.iam.Role(f"{name}-execution", assume_role_policy=assume_role(
            "ecs-tasks.amazonaws.com"), tags=t, opts=child(self))
        aws.iam.RolePolicyAttachment(
            f"{name}-execution", role=self.execution_role.name, opts=child(self),
            policy_arn="arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy")
        aws.iam.RolePolicy(f"{name}-execution-secret", role=self.execution_role.id, opts=child(self),
                           policy=policy_json(statement(["secretsmanager:GetSecretValue"],
                                                        secrets.platform_secret.arn)))
        scope = pulumi.Output.all(
            account=ident.account_id, region=region.region, bus=args.bus_arn,
            queues=pulumi.Output.from_input(args.queue_arns), kms=secrets.key.arn, fs=args.file_system_arn,
            secret=secrets.platform_secret.arn,
        ).apply(lambda v: Scope(v["account"], v["region"], args.prefix, v["bus"], v["queues"], v["kms"],
                                v["fs"], v["secret"], args.state_bucket))
        self.task_roles: dict[str, aws.iam.Role] = {}
        for service in SERVICES:
            role = aws.iam.Role(f"{name}-{service}", name=f"{args.prefix}-cp-{service}",
                                assume_role_policy=assume_role("ecs-tasks.amazonaws.com"),
                                tags={**t, "service": service}, opts=child(self))
            aws.iam.RolePolicy(f"{name}-{service}", role=role.id, opts=child(self), policy=scope.apply(
                lambda sc, svc=service: json.dumps({"Version": "2012-10-17", "Statement": permissions(svc, sc)},
                                                   sort_keys=True)))
            self.task_roles[service] = role
            self._service(name, service, role, args, secrets, t)
        self.register_outputs({"task_role_arns": {s: r.arn for s, r in self.task_roles.items()}})

    def _service(self, name: str, service: str, role: aws.iam.Role, args: ControlPlaneArgs,
                 secrets: Secrets, t: dict[str, str]) -> None:
        module = service.replace("-", "_")
        writes_artifacts = service in ARTIFACT_WRITERS
        logs = aws.cloudwatch.LogGroup(f"{name}-{service}-logs", retention_in_days=30, tags=t, opts=child(self))
        container = pulumi.Output.all(args.image, logs.name, secrets.platform_secret.arn).apply(
            lambda v: json.dumps([{
                "name": service, "image": v[0], "essential": True,
                "command": ["python", "-m", f"services.{module}.main"],
                "environment": [{"name": "HOSTPLANE_TARGET", "value": "aws"},
                                {"name": "HOSTPLANE_NAME_PREFIX", "value": args.prefix}]
                + ([{"name": "HOSTPLANE_ARTIFACTS_DIR", "value": "/artifacts"}] if writes_artifacts else []),
                "mountPoints": [{"sourceVolume": "artifacts", "containerPath": "/artifacts"}] if writes_artifacts else [],
                "secrets": [{"name": "HOSTPLANE_CONTROL_DSN", "valueFrom": f"{v[2]}:control_dsn::"},
                            {"name": "HOSTPLANE_VALKEY_URL", "valueFrom": f"{v[2]}:valkey_url::"}],
                "logConfiguration": {"logDriver": "awslogs", "options": {
                    "awslogs-group": v[1], "awslogs-stream-prefix": service,
                    "awslogs-region": aws.config.region or "us-east-1"}},
            }]))
        task = aws.ecs.TaskDefinition(
            f"{name}-{service}", family=f"{args.prefix}-{service}", network_mode="awsvpc",
            requires_compatibilities=["FARGATE"], cpu="512", memory="1024", task_role_arn=role.arn,
            execution_role_arn=self.execution_role.arn, container_definitions=container,
            runtime_platform={"cpu_architecture": "ARM64"}, tags=t, opts=child(self),
            volumes=[{"name": "artifacts", "efs_volume_configuration": {
                "file_system_id": args.file_system_id, "transit_encryption": "ENABLED",
                "authorization_config": {"iam": "ENABLED"}}}] if writes_artifacts else None)
        groups = [args.control_security_group_id]
        if service in TENANT_ADMINS:
            groups.append(args.admin_security_group_id)
        aws.ecs.Service(
            f"{name}-{service}", cluster=args.cluster_arn, task_definition=task.arn, desired_count=1,
            launch_type="FARGATE", propagate_tags="SERVICE", tags={**t, "service": service}, opts=child(self),
            network_configuration={"subnets": args.subnet_ids, "security_groups": groups})
