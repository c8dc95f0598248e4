"""A tenant's runtime: the reloader container as an ECS service, bin-packed on the shared
fleet, mounting only the tenant's EFS access point, with secrets injected from the
tenant's secret, registered in Cloud Map with an SRV record (what Caddy resolves) and
scaled on CPU and on requests per task; with scale to zero, an idle alarm on the same metric
(docs/scale-to-zero.md, On AWS)."""

from __future__ import annotations

import json
import math
import re

import pulumi
import pulumi_aws as aws

from infra.common import BINPACK, assume_role, child, policy_json, statement, tags
from infra.publishing import tenant_publishing
from infra.tenant.args import TenantInfraArgs
from reloader.config import TENANT_ENV_VAR
from reloader.traffic import REQUESTS_PER_TASK, TENANT_DIMENSION, metrics_namespace

CPU_TARGET_PERCENT = 60
REQUESTS_PER_TASK_TARGET = 200  # per minute; the reloader publishes it (reloader.traffic)
HEALTH_PORT = 8081  # the reloader's own /runtime/healthz, never the app's
HEALTH_PROBE = "import urllib.request as u; u.urlopen('http://127.0.0.1:{port}/runtime/healthz', timeout=3)"
# CloudWatch's PutMetricAlarm: Period × EvaluationPeriods at most 7 days (604,800 s), and at most
# one day (86,400 s) for a period under an hour (CloudWatch API reference, PutMetricAlarm, Period).
ALARM_MINUTE_WINDOW_S = 86_400
ALARM_MAX_WINDOW_S = 604_800


def idle_alarm_window(idle_after_s: int) -> tuple[int, int] | None:
    """(period s, evaluation periods) of the idle alarm: minutes up to a day, the idle period
    rounded up to whole periods (900 s → 15 × 60 s), hours past a day (CloudWatch allows no
    longer window of minutes), so a tenant never sleeps sooner than it asked. None: no alarm,
    for 0 (always on) and past 7 days, which CloudWatch cannot watch: such a tenant stays
    awake rather than sleep sooner than it asked."""
    if idle_after_s <= 0 or idle_after_s > ALARM_MAX_WINDOW_S:
        return None
    period = 60 if idle_after_s <= ALARM_MINUTE_WINDOW_S else 3600
    return period, math.ceil(idle_after_s / period)


def idle_alarm_name(prefix: str, tenant_id: str) -> str:
    """`<prefix>-idle-<tenant>`: what the activator's rule checks, and what a stack driver's
    CloudWatch grant can name (`alarm:<prefix>-idle-*`)."""
    return f"{prefix}-idle-{tenant_id}"


# <account>.dkr.ecr.<region>.amazonaws.com/<repository>[:tag|@digest]
ECR_IMAGE = re.compile(r"^(?P<account>[0-9]{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/"
                       r"(?P<repository>[a-z0-9._/-]+?)(?::[\w.-]+)?(?:@sha256:[0-9a-f]{64})?$")


def image_pull(image: str) -> list[dict]:
    """ECR pull rights for exactly the runtime image's repository (the task role is also the
    execution role); none for an image outside ECR (a public one needs no credentials)."""
    m = ECR_IMAGE.match(image)
    if m is None:
        return []
    partition = "aws-cn" if ".amazonaws.com.cn/" in image else "aws"
    repo = f"arn:{partition}:ecr:{m['region']}:{m['account']}:repository/{m['repository']}"
    return [statement(["ecr:GetAuthorizationToken"], "*", sid="EcrLogin"),  # no resource type (SAR)
            statement(["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"], repo, sid="PullImage")]


class TenantRuntime(pulumi.ComponentResource):
    def __init__(self, name: str, args: TenantInfraArgs, bucket_arn: pulumi.Input[str],
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("hostplane:tenant:Runtime", name, None, opts)
        names, p = args.names, args.platform
        t = tags("runtime", args.tenant_id, **args.extra_tags)
        uid = args.posix_id
        self.access_point = aws.efs.AccessPoint(
            f"{name}-artifacts", file_system_id=p.file_system_id, tags=t, opts=child(self),
            posix_user={"uid": uid, "gid": uid},
            root_directory={"path": f"/{names.artifact_dir}", "creation_info": {
                "owner_uid": uid, "owner_gid": uid, "permissions": "0750"}})
        logs = aws.cloudwatch.LogGroup(f"{name}-logs", name=f"/{args.prefix}/tenants/{args.tenant_id}",
                                       retention_in_days=14, tags=t, opts=child(self))
        # One role is both task and execution role: IAM roles are an account quota (1,000 by
        # default) and the agent's pulls/secret reads are the tenant's own anyway.
        self.role = aws.iam.Role(f"{name}-role", name=names.task_role, tags=t, opts=child(self),
                                 assume_role_policy=assume_role("ecs-tasks.amazonaws.com"))
        aws.iam.RolePolicy(f"{name}-role", role=self.role.id, opts=child(self), policy=policy_json(
            statement(["secretsmanager:GetSecretValue"], args.secret_arn, sid="OwnSecret"),
            statement(["elasticfilesystem:ClientMount"], p.file_system_arn, sid="OwnArtifacts",
                      condition={"StringEquals": {"elasticfilesystem:AccessPointArn": self.access_point.arn}}),
            statement(["s3:GetObject", "s3:PutObject", "s3:ListBucket"],
                      [bucket_arn, pulumi.Output.concat(bucket_arn, "/*")], sid="OwnBucket"),
            statement(["logs:CreateLogStream", "logs:PutLogEvents"],
                      pulumi.Output.concat(logs.arn, ":*"), sid="OwnLogs"),
            *image_pull(args.image),
            # The bus only under the tenant's own runtime source and the runtime's event types
            # (infra.publishing): consumers trust the source, so a tenant speaks only for itself.
            statement(["events:PutEvents"], p.bus_arn, sid="ReportReleases",
                      condition=tenant_publishing(args.tenant_id)),
            # PutMetricData has no resource type and no dimension condition key; the namespace
            # is the tenant's own (reloader.traffic.metrics_namespace), so the scaling metric
            # of one tenant cannot be written by another.
            statement(["cloudwatch:PutMetricData"], "*", sid="RuntimeMetrics",
                      condition={"StringEquals": {"cloudwatch:namespace": metrics_namespace(args.tenant_id)}}),
        ))
        container = pulumi.Output.all(args.secret_arn, logs.name).apply(lambda v: json.dumps([{
            "name": "reloader", "image": args.image, "essential": True,
            # Packed by the reservation; the hard limit is what the kernel enforces (OOM kill):
            # one tenant cannot take the instance's memory from the others.
            "memoryReservation": args.memory_mb, "memory": args.memory_limit_mb,
            # A soft CPU share (cpu.shares), on the container: a task-level cpu on EC2 must be
            # at least 128 units (RegisterTaskDefinition), and the task sets none.
            "cpu": args.cpu,
            "portMappings": [{"containerPort": args.container_port, "hostPort": 0, "protocol": "tcp"}],
            "command": ["python", "-m", "reloader", "--tenant", args.tenant_id, "--artifacts", "/artifacts",
                        "--work-dir", "/tmp/releases", "--host", "0.0.0.0", "--port", str(args.container_port),
                        "--health-port", str(HEALTH_PORT), "--events", "bus",
                        "--memory-mb", str(args.memory_mb)],  # the app's limit, as the local agent sets it
            "environment": [{"name": "HOSTPLANE_TARGET", "value": "aws"},
                            {"name": "HOSTPLANE_NAME_PREFIX", "value": args.prefix}],
            # The whole secret (a JSON object of the tenant's variables) is what the reloader
            # hands to the app: the value never appears in the task definition.
            "secrets": [{"name": TENANT_ENV_VAR, "valueFrom": v[0]}],
            "mountPoints": [{"sourceVolume": "artifacts", "containerPath": "/artifacts", "readOnly": True}],
            # The health check probes the reloader, never the app (DESIGN.md, Reloader).
            "healthCheck": {"command": ["CMD", "python", "-c", HEALTH_PROBE.format(port=HEALTH_PORT)],
                            "interval": 15,
                            "timeout": 5, "retries": 3, "startPeriod": 20},
            "logConfiguration": {"logDriver": "awslogs", "options": {
                "awslogs-group": v[1], "awslogs-region": aws.config.region or "us-east-1",
                "awslogs-stream-prefix": "runtime"}},
        }]))
        self.task = aws.ecs.TaskDefinition(
            f"{name}-task", family=names.runtime_service, network_mode="bridge",
            requires_compatibilities=["EC2"], task_role_arn=self.role.arn,
            execution_role_arn=self.role.arn, container_definitions=container, tags=t, opts=child(self),
            volumes=[{"name": "artifacts", "efs_volume_configuration": {
                "file_system_id": p.file_system_id, "transit_encryption": "ENABLED",
                "authorization_config": {"access_point_id": self.access_point.id, "iam": "ENABLED"}}}])
        self.discovery = aws.servicediscovery.Service(
            f"{name}-srv", name=names.runtime_service, tags=t, opts=child(self),
            dns_config={"namespace_id": p.namespace_id, "routing_policy": "MULTIVALUE",
                        "dns_records": [{"type": "SRV", "ttl": 10}]},
            health_check_custom_config={},
            # DeleteService fails while instances are registered; on destroy the tasks may still
            # be deregistering: the provider deregisters what is left first.
            force_destroy=True)
        self.service = aws.ecs.Service(
            f"{name}-service", name=names.runtime_service, cluster=p.cluster_arn, task_definition=self.task.arn,
            desired_count=args.min_tasks, ordered_placement_strategies=BINPACK,
            capacity_provider_strategies=[{"capacity_provider": p.capacity_provider, "weight": 1}],
            service_registries={"registry_arn": self.discovery.arn, "container_name": "reloader",
                                "container_port": args.container_port},
            deployment_minimum_healthy_percent=100, deployment_maximum_percent=200,
            propagate_tags="SERVICE", enable_ecs_managed_tags=True, tags=t,
            opts=child(self, ignore_changes=["desiredCount"]))
        self._autoscaling(name, args, t)
        self.idle_alarm = self._idle_alarm(name, args, t)
        self.register_outputs({"service_name": self.service.name, "srv_name": self.discovery.name,
                               "access_point_id": self.access_point.id, "task_role_arn": self.role.arn})

    def _idle_alarm(self, name: str, args: TenantInfraArgs, t: dict[str, str]) -> aws.cloudwatch.MetricAlarm | None:
        """ALARM once every task of the tenant served nothing for the idle period: the activator
        (not built) puts it to sleep on that state change, through EventBridge (`aws.cloudwatch`,
        CloudWatch Alarm State Change), so the alarm has no actions. A sleeping service publishes
        nothing: missing data is not breaching, the alarm returns to OK and a wake counts afresh."""
        window = idle_alarm_window(args.idle_after)
        if window is None:
            return None
        period, periods = window
        return aws.cloudwatch.MetricAlarm(
            f"{name}-idle", name=idle_alarm_name(args.prefix, args.tenant_id),
            alarm_description=f"{args.tenant_id}: no request for {args.idle_after} s (scale to zero)",
            namespace=metrics_namespace(args.tenant_id), metric_name=REQUESTS_PER_TASK,
            dimensions={TENANT_DIMENSION: args.tenant_id}, statistic="Sum", period=period,
            evaluation_periods=periods, threshold=0, comparison_operator="LessThanOrEqualToThreshold",
            treat_missing_data="notBreaching", tags=t, opts=child(self))

    def _autoscaling(self, name: str, args: TenantInfraArgs, t: dict[str, str]) -> None:
        resource_id = pulumi.Output.all(args.platform.cluster_arn, self.service.name).apply(
            lambda v: f"service/{v[0].split('/')[-1]}/{v[1]}")
        target = aws.appautoscaling.Target(
            f"{name}-scaling", service_namespace="ecs", scalable_dimension="ecs:service:DesiredCount",
            resource_id=resource_id, min_capacity=args.min_tasks, max_capacity=args.max_tasks, tags=t,
            opts=child(self))
        common = {"policy_type": "TargetTrackingScaling", "resource_id": target.resource_id,
                  "scalable_dimension": target.scalable_dimension, "service_namespace": target.service_namespace}
        aws.appautoscaling.Policy(f"{name}-cpu", **common, opts=child(self), target_tracking_scaling_policy_configuration={
            "target_value": CPU_TARGET_PERCENT, "scale_in_cooldown": 120, "scale_out_cooldown": 30,
            "predefined_metric_specification": {"predefined_metric_type": "ECSServiceAverageCPUUtilization"}})
        aws.appautoscaling.Policy(f"{name}-requests", **common, opts=child(self), target_tracking_scaling_policy_configuration={
            "target_value": REQUESTS_PER_TASK_TARGET, "scale_in_cooldown": 120, "scale_out_cooldown": 30,
            "customized_metric_specification": {
                "namespace": metrics_namespace(args.tenant_id), "metric_name": REQUESTS_PER_TASK,
                "statistic": "Average",
                "dimensions": [{"name": TENANT_DIMENSION, "value": args.tenant_id}]}})
