"""The shared edge: Cloud Map namespace, ALB → Caddy ECS service, and the pooled
CloudFront multi-tenant distribution with its KeyValueStore (host → tenant id).

Two ALB listener rules exist, ever, neither per tenant: `api.<base domain>` → the API
(`api_domain()`; the CLI and the dashboard, not through CloudFront, so no origin-verify
header), then "the request carries the origin-verify header" → Caddy (so only CloudFront
reaches tenants); everything else gets 403. Tenants are routed by Caddy, not by the ALB.

CloudFront reaches the ALB over HTTPS and checks that the ALB's certificate matches the
origin domain; no certificate can be issued for the ALB's own `*.elb.amazonaws.com` name, so
every distribution's origin is `edge.<base domain>` (`origin_domain()`): an alias record to
the ALB in the platform's zone, served with a DNS-validated ACM certificate for that name
(and for `api.<base domain>`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws

from infra.common import assume_role, child, tags
from infra.platform.caddy import HEALTH_PATH, caddy_config_json
from infra.platform.network import API_PORT, HTTPS_PORT

CADDY_IMAGE = "public.ecr.aws/docker/library/caddy:2.11-alpine"
FUNCTIONS = Path(__file__).resolve().parent.parent / "functions"
ORIGIN_VERIFY_HEADER = "X-Origin-Verify"
# A reserved tenant id (contracts.tenant): no tenant's `<id>.<base domain>` record can take it.
ORIGIN_LABEL = "edge"
API_LABEL = "api"  # reserved too
API_HEALTH_PATH = "/livez"  # services/api/app.py: unauthenticated, the process only (not the database)
# The API's host rule is evaluated first: a request for the API host is the API's, whatever
# headers it carries. Gaps leave room for fixed rules to come; tenants never get one.
API_RULE_PRIORITY = 1
TENANT_RULE_PRIORITY = 10


def origin_domain(base_domain: str) -> str:
    """The ALB's name as CloudFront's origin (the certificate covers it)."""
    return f"{ORIGIN_LABEL}.{base_domain}"


def api_domain(base_domain: str) -> str:
    """The API's public name: the CLI's HOSTPLANE_API_URL is https://<this>."""
    return f"{API_LABEL}.{base_domain}"


@dataclass
class EdgeArgs:
    vpc_id: pulumi.Input[str]
    public_subnet_ids: list[pulumi.Input[str]]
    private_subnet_ids: list[pulumi.Input[str]]
    alb_security_group_id: pulumi.Input[str]
    caddy_security_group_id: pulumi.Input[str]
    cluster_arn: pulumi.Input[str]
    zone_id: str  # the platform's Route 53 zone, for base_domain
    base_domain: str
    origin_verify: pulumi.Input[str]
    prefix: str = "hostplane"
    namespace: str = "hostplane.internal"
    caddy_tasks: int = 2
    api_port: int = API_PORT


class Edge(pulumi.ComponentResource):
    def __init__(self, name: str, args: EdgeArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("hostplane:platform:Edge", name, None, opts)
        t = tags("edge")
        self.namespace = aws.servicediscovery.PrivateDnsNamespace(
            f"{name}-ns", name=args.namespace, vpc=args.vpc_id, tags=t, opts=child(self))
        self.alb = aws.lb.LoadBalancer(
            f"{name}-alb", load_balancer_type="application", internal=False, subnets=args.public_subnet_ids,
            security_groups=[args.alb_security_group_id], drop_invalid_header_fields=True, idle_timeout=120,
            tags=t, opts=child(self))
        caddy_tg = aws.lb.TargetGroup(
            f"{name}-caddy", port=80, protocol="HTTP", target_type="ip", vpc_id=args.vpc_id,
            deregistration_delay=30, health_check={"path": HEALTH_PATH, "matcher": "200"}, tags=t,
            opts=child(self))
        self.origin_domain, self.api_domain = origin_domain(args.base_domain), api_domain(args.base_domain)
        certificate_arn = self._names(name, args, t)
        self.listener = aws.lb.Listener(
            f"{name}-https", load_balancer_arn=self.alb.arn, port=HTTPS_PORT, protocol="HTTPS",
            ssl_policy="ELBSecurityPolicy-TLS13-1-2-2021-06", certificate_arn=certificate_arn,
            default_actions=[{"type": "fixed-response", "fixed_response": {
                "content_type": "text/plain", "status_code": "403", "message_body": "forbidden"}}],
            tags=t, opts=child(self))
        from_cloudfront = aws.lb.ListenerRule(
            f"{name}-from-cloudfront", listener_arn=self.listener.arn, priority=TENANT_RULE_PRIORITY,
            conditions=[{"http_header": {"http_header_name": ORIGIN_VERIFY_HEADER, "values": [args.origin_verify]}}],
            actions=[{"type": "forward", "target_group_arn": caddy_tg.arn}], tags=t, opts=child(self))
        self.api_target_group = aws.lb.TargetGroup(
            f"{name}-api", port=args.api_port, protocol="HTTP", target_type="ip", vpc_id=args.vpc_id,
            deregistration_delay=30, health_check={"path": API_HEALTH_PATH, "matcher": "200"}, tags=t,
            opts=child(self))
        # depends_on: a stack deployed before this rule had the tenant rule at priority 1; it
        # moves first, so the two never claim one priority.
        api_rule = aws.lb.ListenerRule(
            f"{name}-api", listener_arn=self.listener.arn, priority=API_RULE_PRIORITY,
            conditions=[{"host_header": {"values": [self.api_domain]}}],
            actions=[{"type": "forward", "target_group_arn": self.api_target_group.arn}], tags=t,
            opts=child(self, depends_on=[from_cloudfront]))
        # What the API's ECS service registers with: ECS refuses a target group that no
        # listener forwards to yet, so this ARN is known only once the rule exists.
        self.api_target_group_arn = pulumi.Output.all(self.api_target_group.arn, api_rule.arn).apply(
            lambda v: v[0])
        config = caddy_config_json(prefix=args.prefix, namespace=args.namespace)
        task_role = aws.iam.Role(f"{name}-caddy-task", assume_role_policy=assume_role("ecs-tasks.amazonaws.com"),
                                 tags=t, opts=child(self))  # Caddy needs no AWS permission at all
        # Its own execution role: pull a public image, write its logs; no platform secret.
        execution_role = aws.iam.Role(f"{name}-caddy-execution", tags=t, opts=child(self),
                                      assume_role_policy=assume_role("ecs-tasks.amazonaws.com"))
        aws.iam.RolePolicyAttachment(
            f"{name}-caddy-execution", role=execution_role.name, opts=child(self),
            policy_arn="arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy")
        logs = aws.cloudwatch.LogGroup(f"{name}-caddy", retention_in_days=30, tags=t, opts=child(self))
        task = aws.ecs.TaskDefinition(
            f"{name}-caddy", family=f"{args.prefix}-caddy", network_mode="awsvpc",
            requires_compatibilities=["FARGATE"], cpu="512", memory="1024", task_role_arn=task_role.arn,
            execution_role_arn=execution_role.arn, runtime_platform={"cpu_architecture": "ARM64"},
            container_definitions=logs.name.apply(lambda group: json.dumps([{
                "name": "caddy", "image": CADDY_IMAGE, "essential": True,
                "portMappings": [{"containerPort": 80, "protocol": "tcp"}],
                "environment": [{"name": "CADDY_CONFIG", "value": config}],
                "entryPoint": ["sh", "-c"],
                "command": ['printf %s "$CADDY_CONFIG" > /tmp/caddy.json && exec caddy run --config /tmp/caddy.json'],
                "logConfiguration": {"logDriver": "awslogs", "options": {
                    "awslogs-group": group, "awslogs-region": aws.config.region or "us-east-1",
                    "awslogs-stream-prefix": "caddy"}},
            }])), tags=t, opts=child(self))
        self.caddy = aws.ecs.Service(
            f"{name}-caddy", cluster=args.cluster_arn, task_definition=task.arn, desired_count=args.caddy_tasks,
            launch_type="FARGATE", network_configuration={"subnets": args.private_subnet_ids,
                                                          "security_groups": [args.caddy_security_group_id]},
            load_balancers=[{"target_group_arn": caddy_tg.arn, "container_name": "caddy", "container_port": 80}],
            # ECS refuses a target group that no listener forwards to: wait for the rule that
            # attaches it (the API's service waits for its rule through api_target_group_arn).
            propagate_tags="SERVICE", tags=t, opts=child(self, depends_on=[self.listener, from_cloudfront]))
        self.register_outputs({"alb_dns_name": self.alb.dns_name, "namespace_id": self.namespace.id,
                               "origin_domain": self.origin_domain, "api_domain": self.api_domain})

    def _names(self, name: str, args: EdgeArgs, t: dict[str, str]) -> pulumi.Output[str]:
        """`edge.<base domain>` and `api.<base domain>` → the ALB, and one certificate for both,
        DNS-validated in the platform's zone (ALB's region). Returns the validated ARN."""
        alias = [{"name": self.alb.dns_name, "zone_id": self.alb.zone_id, "evaluate_target_health": False}]
        cert = aws.acm.Certificate(f"{name}-origin", domain_name=self.origin_domain,
                                   subject_alternative_names=[self.api_domain], validation_method="DNS", tags=t,
                                   opts=child(self))
        fqdns = []
        for label, domain in (("origin", self.origin_domain), ("api", self.api_domain)):
            aws.route53.Record(f"{name}-{label}", zone_id=args.zone_id, name=domain, type="A", aliases=alias,
                               opts=child(self))
            check = cert.domain_validation_options.apply(lambda options, d=domain: validation_option(options, d))
            record = aws.route53.Record(
                f"{name}-{label}-validation", zone_id=args.zone_id, name=check.resource_record_name,
                type=check.resource_record_type, records=[check.resource_record_value], ttl=60,
                allow_overwrite=True, opts=child(self))
            fqdns.append(record.fqdn)
        validated = aws.acm.CertificateValidation(f"{name}-origin", certificate_arn=cert.arn,
                                                  validation_record_fqdns=fqdns, opts=child(self))
        return validated.certificate_arn


def validation_option(options: list[aws.acm.outputs.CertificateDomainValidationOption],
                domain: str) -> aws.acm.outputs.CertificateDomainValidationOption:
    """The DNS record that proves `domain`: ACM lists one per name, in no promised order."""
    for option in options:
        if option.domain_name == domain:
            return option
    raise ValueError(f"the certificate lists no DNS validation for {domain}")


@dataclass
class PooledEdgeArgs:
    origin_domain: pulumi.Input[str]  # Edge.origin_domain, never the ALB's AWS name
    origin_verify: pulumi.Input[str]
    prefix: str = "hostplane"


class PooledEdge(pulumi.ComponentResource):
    """One CloudFront multi-tenant distribution shared by every `pooled` tenant: a viewer-
    request function resolves the tenant id from the KeyValueStore by host name."""

    def __init__(self, name: str, args: PooledEdgeArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("hostplane:platform:PooledEdge", name, None, opts)
        t = tags("pooled-edge")
        self.kvs = aws.cloudfront.KeyValueStore(f"{name}-tenants", name=f"{args.prefix}-tenants",
                                                comment="host name -> tenant id", opts=child(self))
        request_fn = aws.cloudfront.Function(
            f"{name}-tenant-from-host", name=f"{args.prefix}-pooled-tenant", runtime="cloudfront-js-2.0",
            publish=True, code=(FUNCTIONS / "pooled_viewer_request.js").read_text(),
            key_value_store_associations=[self.kvs.arn], opts=child(self))
        response_fn = aws.cloudfront.Function(
            f"{name}-security-headers", name=f"{args.prefix}-pooled-security-headers", runtime="cloudfront-js-2.0",
            publish=True, code=(FUNCTIONS / "viewer_response.js").read_text(), opts=child(self))
        functions = [{"event_type": "viewer-request", "function_arn": request_fn.arn},
                     {"event_type": "viewer-response", "function_arn": response_fn.arn}]
        managed = aws.cloudfront.get_cache_policy_output(name="Managed-CachingDisabled")
        optimized = aws.cloudfront.get_cache_policy_output(name="Managed-CachingOptimized")
        # Not the viewer's Host: the ALB's certificate names edge.<base domain> only (as the
        # dedicated edge's ALL_VIEWER_EXCEPT_HOST).
        all_viewer = aws.cloudfront.get_origin_request_policy_output(name="Managed-AllViewerExceptHostHeader")
        region = aws.get_region_output().region
        self.distribution = aws.cloudfront.MultitenantDistribution(
            f"{name}-pooled", comment=f"{args.prefix} pooled tenants", enabled=True, http_version="http2and3",
            # The provider's shape (MultitenantDistributionTenantConfigParameterDefinitionArgs):
            # `definitions` and `string_schemas` are lists.
            tenant_config={"parameter_definitions": [{"name": "tenant", "definitions": [{
                "string_schemas": [{"required": True, "comment": "tenant id (bucket name part)"}]}]}]},
            origins=[
                {"id": "alb", "domain_name": args.origin_domain,
                 # MultitenantDistributionOriginCustomHeaderArgs: header_name/header_value
                 # (the standard distribution's custom_headers take name/value).
                 "custom_headers": [{"header_name": ORIGIN_VERIFY_HEADER, "header_value": args.origin_verify}],
                 "custom_origin_configs": [{"http_port": 80, "https_port": 443,
                                            "origin_protocol_policy": "https-only",
                                            "origin_ssl_protocols": ["TLSv1.2"]}]},
                # The bucket's regional name (the global one answers 307 outside us-east-1
                # while DNS catches up, up to a day), as the dedicated edge's origin.
                {"id": "static", "domain_name": pulumi.Output.concat(
                    f"{args.prefix}-{{{{tenant}}}}-static.s3.", region, ".amazonaws.com"),
                 "origin_access_control_id": _oac(self, name, args.prefix).id},
            ],
            default_cache_behavior={
                "target_origin_id": "alb", "viewer_protocol_policy": "redirect-to-https",
                "allowed_methods": {"items": ["GET", "HEAD", "OPTIONS", "PUT", "POST", "PATCH", "DELETE"],
                                    "cached_methods": ["GET", "HEAD"]},
                "cache_policy_id": managed.id, "origin_request_policy_id": all_viewer.id,
                "function_associations": functions},
            cache_behaviors=[{
                "path_pattern": "/static/*", "target_origin_id": "static", "viewer_protocol_policy": "redirect-to-https",
                "allowed_methods": {"items": ["GET", "HEAD"], "cached_methods": ["GET", "HEAD"]},
                "cache_policy_id": optimized.id, "function_associations": functions}],
            viewer_certificate={"cloudfront_default_certificate": True}, tags=t, opts=child(self))
        self.connection_group = aws.cloudfront.ConnectionGroup(
            f"{name}-pooled", name=f"{args.prefix}-pooled", enabled=True, tags=t, opts=child(self))
        self.register_outputs({"distribution_id": self.distribution.id, "distribution_arn": self.distribution.arn,
                               "kvs_arn": self.kvs.arn, "routing_endpoint": self.connection_group.routing_endpoint})


def _oac(parent: pulumi.Resource, name: str, prefix: str) -> aws.cloudfront.OriginAccessControl:
    return aws.cloudfront.OriginAccessControl(
        f"{name}-static-oac", name=f"{prefix}-pooled-static", origin_access_control_origin_type="s3",
        signing_behavior="always", signing_protocol="sigv4", opts=child(parent))
