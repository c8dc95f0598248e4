"""The control-plane services as ECS services on Fargate, each with its own least-privilege
task role (infra/platform/permissions.py) and only the settings it starts with, and the
platform's KMS key and secrets.

With HOSTPLANE_TARGET=aws every service needs its region and prefix (queue and bus names
derive from the prefix: events.topology) and the control database; the tenant-stack
drivers (provisioner, router-config, deprovisioner) the tenant-stack settings
(HOSTPLANE_AWS_*, services/resources/aws/wiring.py `AwsTarget`), the provisioner and
deprovisioner also the admin cache URL; the API its token, where to listen (every interface of
its awsvpc task, behind the ALB: `ApiEndpoint`) and whose X-Forwarded-* to believe. Nothing more.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.common import assume_role, child, policy_json, statement, tags
from infra.platform.network import API_PORT
from infra.platform.permissions import (  # noqa: F401  (re-exported: the tests' entry point)
    ARTIFACT_WRITERS, INLINE_LIMIT, MANAGED_LIMIT, QUEUE_ACTIONS, SERVICES, STACK_DRIVERS, STACK_MANAGED_POLICIES,
    UNSCOPABLE, Scope, fitted, inline_permissions, managed_permissions, permissions)

# Create databases and cache users: these tasks carry the tenant-admin security group.
TENANT_ADMINS = frozenset({"provisioner", "migrator", "deprovisioner"})
# Open the cache as its admin (tenant cache users: services/resources/wiring.py).
CACHE_ADMINS = frozenset({"provisioner", "deprovisioner"})
# Fargate sizes (cpu units, MiB). A stack driver runs up to two Automation jobs at once, each
# the Pulumi CLI (~200 MiB) + the tenant program's Python host (~150 MiB) + the AWS provider
# plugin (~0.8-1 GiB resident: its schema is large), besides the service itself: 4 GiB holds
# both jobs with headroom; one vCPU keeps plugin start-up (CPU-bound) to seconds.
TASK_SIZE = {"default": ("512", "1024"), "stack-driver": ("1024", "4096")}
# GiB. The control-plane image with the Pulumi CLI and the AWS plugin (~1 GiB unpacked) plus
# plugin caches and checkpoints of concurrent jobs; Fargate's default 20 GiB is shared with
# the image layers.
STACK_DRIVER_EPHEMERAL_GIB = 30
# Keys of the `<prefix>/platform/control` secret (JSON), and who reads which.
SECRET_KEYS = {"HOSTPLANE_CONTROL_DSN": "control_dsn", "HOSTPLANE_VALKEY_URL": "valkey_url",
               "HOSTPLANE_API_TOKEN": "api_token"}
# Inside its own awsvpc task the API listens on every interface (core.settings `host`,
# loopback by default); its security group admits only the ALB.
API_BIND_HOST = "0.0.0.0"
API_GRACE_S = 60  # the API's start-up (pool, schema) before the ALB's health checks count


@dataclass(frozen=True)
class TenantStackTarget:
    """Where tenant stacks live and what they are built from: the HOSTPLANE_AWS_* settings
    the tenant-stack drivers (provisioner, router-config, deprovisioner) start with (`AwsTarget`)."""

    state_url: str  # s3://<state bucket>/<prefix>: the backend the platform stack is in, too
    platform_stack: str  # organization/hostplane-platform/<stack>, for the StackReference
    tenant_image: str
    zone_id: str
    base_domain: str
    wildcard_certificate_arn: str  # us-east-1, *.<base_domain>
    edge: str = "pooled"

    def environment(self, kms_alias: str) -> dict[str, str]:
        return {"HOSTPLANE_AWS_STATE_URL": self.state_url, "HOSTPLANE_AWS_KMS_ALIAS": kms_alias,
                "HOSTPLANE_AWS_PLATFORM_STACK": self.platform_stack,
                "HOSTPLANE_AWS_TENANT_IMAGE": self.tenant_image, "HOSTPLANE_AWS_ZONE_ID": self.zone_id,
                "HOSTPLANE_AWS_BASE_DOMAIN": self.base_domain,
                "HOSTPLANE_AWS_WILDCARD_CERTIFICATE_ARN": self.wildcard_certificate_arn,
                "HOSTPLANE_AWS_EDGE": self.edge}


def service_environment(service: str, *, prefix: str, region: str, stack_env: dict[str, str],
                        alb_subnet_cidrs: list[str] | None = None) -> dict[str, str]:
    """The plain environment of one service's container (no secret values)."""
    env = {"HOSTPLANE_TARGET": "aws", "HOSTPLANE_NAME_PREFIX": prefix, "HOSTPLANE_REGION": region}
    if service == "api":
        env |= {"HOSTPLANE_HOST": API_BIND_HOST, "HOSTPLANE_API_PORT": str(API_PORT),
                "HOSTPLANE_PUBLIC_DOMAIN": stack_env["HOSTPLANE_AWS_BASE_DOMAIN"]}  # tenant URLs, domain checks
        if alb_subnet_cidrs:
            # uvicorn believes X-Forwarded-Proto/-For from the ALB's nodes only: the dashboard
            # then sees https (Secure cookie, Origin check) and the client's own address.
            env["FORWARDED_ALLOW_IPS"] = ",".join(alb_subnet_cidrs)
    if service in ARTIFACT_WRITERS:
        env["HOSTPLANE_ARTIFACTS_DIR"] = "/artifacts"
    if service in STACK_DRIVERS:
        env |= stack_env
        # A task that selects an existing tenant stack has no Pulumi.<stack>.yaml (only the task
        # that created it had); the CLI then uses the secrets manager recorded in the stack's
        # state (awskms, the platform key) instead of a default passphrase one that fails.
        env["PULUMI_FALLBACK_TO_STATE_SECRETS_MANAGER"] = "true"
    return env


def service_secrets(service: str) -> list[str]:
    """Which HOSTPLANE_* variables come from the platform secret."""
    names = ["HOSTPLANE_CONTROL_DSN"]  # services.runner: every service's consumer and outbox
    if service in CACHE_ADMINS:
        names.append("HOSTPLANE_VALKEY_URL")
    if service == "api":
        names.append("HOSTPLANE_API_TOKEN")  # services/api/server.py refuses to start without it
    return names


@dataclass
class ApiEndpoint:
    """How the ALB reaches the API (edge.py, network.py)."""

    target_group_arn: pulumi.Input[str]  # Edge.api_target_group_arn: known once the listener forwards to it
    security_group_id: pulumi.Input[str]  # admits the ALB on API_PORT
    alb_subnet_cidrs: list[pulumi.Input[str]]  # where the ALB's nodes connect from


@dataclass
class ControlPlaneArgs:
    cluster_arn: pulumi.Input[str]
    cluster_name: pulumi.Input[str]
    subnet_ids: list[pulumi.Input[str]]
    control_security_group_id: pulumi.Input[str]
    admin_security_group_id: pulumi.Input[str]
    bus_arn: pulumi.Input[str]
    queue_arns: dict[str, pulumi.Input[str]]
    dlq_arns: dict[str, pulumi.Input[str]]
    file_system_arn: pulumi.Input[str]
    file_system_id: pulumi.Input[str]
    namespace_arn: pulumi.Input[str]
    pooled_kvs_arn: pulumi.Input[str]
    image: pulumi.Input[str]
    state_bucket: str
    state_key_alias: str  # the platform stack's secrets provider, alias/<prefix>-state
    tenant_stacks: TenantStackTarget
    api: ApiEndpoint
    prefix: str = "hostplane"


class Secrets(pulumi.ComponentResource):
    """The platform KMS key (secrets, the tenant stacks' Pulumi secrets provider, databases)
    and the secret holding the control plane's admin addresses (filled in after the first
    deploy). The platform stack's own secrets provider cannot be this key (it must exist
    before the first `pulumi up`): see infra/README.md, Deploying the platform."""

    def __init__(self, name: str, prefix: str, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("hostplane:platform:Secrets", name, None, opts)
        t = tags("secrets")
        self.key = aws.kms.Key(f"{name}-key", description=f"{prefix} platform key", enable_key_rotation=True,
                               deletion_window_in_days=30, tags=t, opts=child(self))
        self.alias = aws.kms.Alias(f"{name}-alias", name=f"alias/{prefix}", target_key_id=self.key.key_id,
                                   opts=child(self))
        self.platform_secret = aws.secretsmanager.Secret(
            f"{name}-control", name=f"{prefix}/platform/control", kms_key_id=self.key.arn,
            description="control_dsn, valkey_url, api_token (JSON)", tags=t, opts=child(self))
        self.register_outputs({"kms_key_arn": self.key.arn, "kms_alias": self.alias.name,
                               "platform_secret_arn": self.platform_secret.arn})


class ControlPlane(pulumi.ComponentResource):
    def __init__(self, name: str, args: ControlPlaneArgs, secrets: Secrets,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("hostplane:platform:ControlPlane", name, None, opts)
        t = tags("control-plane")
        ident = aws.get_caller_identity_output()
        self.region = aws.get_region_output().region
        self.execution_role = aws.iam.Role(f"{name}-execution", assume_role_policy=assume_role(
            "ecs-tasks.amazonaws.com"), tags=t, opts=child(self))
        aws.iam.RolePolicyAttachment(
            f"{name}-execution", role=self.execution_role.name, opts=child(self),
            policy_arn="arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy")
        # The secret is encrypted with the platform key: ECS reads it with this role, which so
        # needs kms:Decrypt on that key, only as Secrets Manager's caller.
        aws.iam.RolePolicy(f"{name}-execution-secret", role=self.execution_role.id, opts=child(self),
                           policy=policy_json(
                               statement(["secretsmanager:GetSecretValue"], secrets.platform_secret.arn,
                                         sid="PlatformSecret"),
                               statement(["kms:Decrypt"], secrets.key.arn, sid="PlatformSecretKey", condition={
                                   "StringEquals": {"kms:ViaService": pulumi.Output.concat(
                                       "secretsmanager.", self.region, ".amazonaws.com")}})))
        target = args.tenant_stacks
        scope = pulumi.Output.all(
            account=ident.account_id, region=self.region, bus=args.bus_arn,
            queues=pulumi.Output.from_input(args.queue_arns), dlqs=pulumi.Output.from_input(args.dlq_arns),
            kms=secrets.key.arn, fs=args.file_system_arn, secret=secrets.platform_secret.arn,
            cluster=args.cluster_name, namespace=args.namespace_arn, kvs=args.pooled_kvs_arn,
        ).apply(lambda v: Scope(v["account"], v["region"], args.prefix, v["bus"], v["queues"], v["dlqs"],
                                v["kms"], v["fs"], v["secret"], args.state_bucket, cluster_name=v["cluster"],
                                namespace_arn=v["namespace"], kvs_arn=v["kvs"], zone_id=target.zone_id,
                                base_domain=target.base_domain, state_key_alias=args.state_key_alias))
        # The tenant-stack permissions: customer-managed policies shared by the stack drivers
        # (IAM's inline budget per role cannot hold them: permissions.INLINE_LIMIT).
        self.stack_policies = {group: aws.iam.Policy(
            f"{name}-{group}", name=f"{args.prefix}-{group}", description=f"{args.prefix}: {group}", tags=t,
            opts=child(self), policy=scope.apply(lambda sc, g=group: fitted(
                managed_permissions(g, sc), MANAGED_LIMIT, f"{args.prefix}-{g}")))
            for group in STACK_MANAGED_POLICIES}
        self.task_roles: dict[str, aws.iam.Role] = {}
        for service in SERVICES:
            role = aws.iam.Role(f"{name}-{service}", name=f"{args.prefix}-cp-{service}",
                                assume_role_policy=assume_role("ecs-tasks.amazonaws.com"),
                                tags={**t, "service": service}, opts=child(self))
            aws.iam.RolePolicy(f"{name}-{service}", role=role.id, opts=child(self), policy=scope.apply(
                lambda sc, svc=service: fitted(inline_permissions(svc, sc), INLINE_LIMIT, f"{args.prefix}-cp-{svc}")))
            if service in STACK_DRIVERS:
                for group, policy in self.stack_policies.items():
                    aws.iam.RolePolicyAttachment(f"{name}-{service}-{group}", role=role.name,
                                                 policy_arn=policy.arn, opts=child(self))
            self.task_roles[service] = role
            self._service(name, service, role, args, secrets, t)
        self.register_outputs({"task_role_arns": {s: r.arn for s, r in self.task_roles.items()}})

    def _service(self, name: str, service: str, role: aws.iam.Role, args: ControlPlaneArgs,
                 secrets: Secrets, t: dict[str, str]) -> None:
        module = service.replace("-", "_")
        writes_artifacts = service in ARTIFACT_WRITERS
        drives_stacks = service in STACK_DRIVERS
        logs = aws.cloudwatch.LogGroup(f"{name}-{service}-logs", retention_in_days=30, tags=t, opts=child(self))
        container = pulumi.Output.all(args.image, logs.name, secrets.platform_secret.arn, self.region,
                                      secrets.alias.name, pulumi.Output.all(*args.api.alb_subnet_cidrs)).apply(
            lambda v: json.dumps([_container(service, module, image=v[0], log_group=v[1], secret_arn=v[2],
                                             region=v[3], prefix=args.prefix,
                                             stack_env=args.tenant_stacks.environment(v[4]),
                                             alb_subnet_cidrs=v[5])]))
        cpu, memory = TASK_SIZE["stack-driver" if drives_stacks else "default"]
        task = aws.ecs.TaskDefinition(
            f"{name}-{service}", family=f"{args.prefix}-{service}", network_mode="awsvpc",
            requires_compatibilities=["FARGATE"], cpu=cpu, memory=memory, task_role_arn=role.arn,
            execution_role_arn=self.execution_role.arn, container_definitions=container,
            runtime_platform={"cpu_architecture": "ARM64"}, tags=t, opts=child(self),
            ephemeral_storage={"size_in_gib": STACK_DRIVER_EPHEMERAL_GIB} if drives_stacks else None,
            volumes=[{"name": "artifacts", "efs_volume_configuration": {
                "file_system_id": args.file_system_id, "transit_encryption": "ENABLED",
                "authorization_config": {"iam": "ENABLED"}}}] if writes_artifacts else None)
        groups = [args.control_security_group_id]
        if service in TENANT_ADMINS:
            groups.append(args.admin_security_group_id)
        behind_alb: dict[str, Any] = {}
        if service == "api":
            groups.append(args.api.security_group_id)
            behind_alb = {"load_balancers": [{"target_group_arn": args.api.target_group_arn,
                                              "container_name": service, "container_port": API_PORT}],
                          "health_check_grace_period_seconds": API_GRACE_S}
        aws.ecs.Service(
            f"{name}-{service}", cluster=args.cluster_arn, task_definition=task.arn, desired_count=1,
            launch_type="FARGATE", propagate_tags="SERVICE", tags={**t, "service": service}, opts=child(self),
            network_configuration={"subnets": args.subnet_ids, "security_groups": groups}, **behind_alb)


def _container(service: str, module: str, *, image: str, log_group: str, secret_arn: str, region: str,
               prefix: str, stack_env: dict[str, str], alb_subnet_cidrs: list[str]) -> dict[str, Any]:
    env = service_environment(service, prefix=prefix, region=region, stack_env=stack_env,
                              alb_subnet_cidrs=alb_subnet_cidrs)
    writes_artifacts = service in ARTIFACT_WRITERS
    return {
        "name": service, "image": image, "essential": True,
        "command": ["python", "-m", f"services.{module}.main"],
        "environment": [{"name": k, "value": v} for k, v in env.items()],
        "portMappings": [{"containerPort": API_PORT, "protocol": "tcp"}] if service == "api" else [],
        "mountPoints": [{"sourceVolume": "artifacts", "containerPath": "/artifacts"}] if writes_artifacts else [],
        "secrets": [{"name": n, "valueFrom": f"{secret_arn}:{SECRET_KEYS[n]}::"} for n in service_secrets(service)],
        "logConfiguration": {"logDriver": "awslogs", "options": {
            "awslogs-group": log_group, "awslogs-stream-prefix": service, "awslogs-region": region}},
    }
