"""`TenantStack`: everything one tenant owns on AWS, as one component.

Bucket (private, OAC), cache user (in the platform's Valkey user group), runtime (ECS
service + EFS access point + Cloud Map SRV + autoscaling), edge (dedicated or pooled),
Route 53 records and, for a custom domain, an ACM certificate in us-east-1. The tenant's
database and role live in the shared Aurora cluster and are made by the provisioner's
SQL adapter (services/resources/postgres.py), as locally; the secret by its secret adapter.
"""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws

from infra.common import child, tags
from infra.platform.edge import validation_option
from infra.tenant.args import TenantInfraArgs
from infra.tenant.edge import DedicatedEdge, PooledTenantEdge, StaticBucket
from infra.tenant.runtime import TenantRuntime
from services.resources.cache import COMMAND_RULES


# ElastiCache refuses an access string naming one of its restricted commands (user guide:
# "Restricted commands"; RBAC: disabled commands raise an exception). `-@dangerous` denies
# these anyway (config, debug, shutdown, migrate are all in @dangerous).
ELASTICACHE_RESTRICTED = frozenset({"bgrewriteaof", "bgsave", "config", "debug", "migrate", "replicaof", "save",
                                    "slaveof", "shutdown", "sync"})


CACHE_GROUP_TIMEOUT = "45m"


def cache_access_string(prefix: str) -> str:
    """The local ACL user's rules (services/resources/cache.py), less those naming a command
    ElastiCache restricts."""
    rules = [r for r in COMMAND_RULES if r.lstrip("+-").split("|")[0].lower() not in ELASTICACHE_RESTRICTED]
    return " ".join(["on", f"~{prefix}*", f"&{prefix}*", *rules])


class TenantStack(pulumi.ComponentResource):
    def __init__(self, name: str, args: TenantInfraArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("hostplane:tenant:TenantStack", name, None, opts)
        names, t = args.names, tags("tenant", args.tenant_id, **args.extra_tags)
        self.static = StaticBucket(f"{name}-static", args, child(self))
        self._cache_user(name, args, t)
        self.runtime = TenantRuntime(f"{name}-runtime", args, self.static.bucket.arn, child(self))
        hosts = [names.host] + ([args.custom_domain] if args.custom_domain else [])
        cert_arn, self.validation_records = self._certificate(name, args, t)
        attached = [names.host] + ([args.custom_domain] if args.custom_domain and cert_arn is not None else [])
        viewer_cert = cert_arn if cert_arn is not None else args.wildcard_certificate_arn
        if args.edge == "dedicated":
            edge: DedicatedEdge | PooledTenantEdge = DedicatedEdge(
                f"{name}-edge", args, self.static, viewer_cert, attached, child(self))
            record = {"type": "A", "aliases": [{"name": edge.domain_name, "zone_id": edge.zone_id,
                                                "evaluate_target_health": False}]}
        else:
            edge = PooledTenantEdge(f"{name}-edge", args, self.static, viewer_cert, attached, child(self))
            record = {"type": "CNAME", "ttl": 300, "records": [edge.domain_name]}
        if args.routed:  # no name leads to the tenant until router-config routes it
            aws.route53.Record(f"{name}-host", zone_id=args.zone_id, name=names.host, opts=child(self), **record)
            if args.custom_domain and args.custom_domain_zone_id:
                aws.route53.Record(f"{name}-custom", zone_id=args.custom_domain_zone_id, name=args.custom_domain,
                                   type="CNAME", ttl=300, records=[edge.domain_name], opts=child(self))
        self.edge = edge
        self.outputs = {
            # edge, customDomain, routed, idleAfter: read back by the next `up` (services/resources/aws/stacks.py)
            "tenantId": args.tenant_id, "edge": args.edge, "customDomain": args.custom_domain or "",
            # the tenant's own idle period as set ("": the installation's), and the one in force
            "idleAfter": "" if args.idle_after_s is None else str(args.idle_after_s),
            "idleAfterS": args.idle_after,
            "idleAlarm": self.runtime.idle_alarm.name if self.runtime.idle_alarm is not None else "",
            "routed": args.routed, "customDomainReady": args.custom_domain_ready,
            "certificateArn": self.certificate.arn if self.certificate is not None else "",
            "hosts": hosts, "routedHosts": attached if args.routed else [],
            "bucket": self.static.bucket.bucket, "runtimeService": self.runtime.service.name,
            "srvName": self.runtime.discovery.name, "taskRoleArn": self.runtime.role.arn,
            "accessPointId": self.runtime.access_point.id, "cacheUser": names.cache_user,
            "edgeDomain": edge.domain_name, "certificateValidation": self.validation_records,
        }
        self.register_outputs(self.outputs)

    def _cache_user(self, name: str, args: TenantInfraArgs, t: dict[str, str]) -> None:
        names = args.names
        secret = aws.secretsmanager.get_secret_version_output(secret_id=args.secret_arn)
        password = pulumi.Output.secret(secret.secret_string.apply(lambda s: json.loads(s)["CACHE_PASSWORD"]))
        self.cache_user = aws.elasticache.User(
            f"{name}-cache-user", user_id=f"{args.prefix}-{names.cache_user}", user_name=names.cache_user,
            engine="valkey", access_string=cache_access_string(names.cache_prefix),
            authentication_mode={"type": "password", "passwords": [password]}, tags=t, opts=child(self))
        # Every tenant's association modifies the one platform group; while it is `modifying`
        # ElastiCache refuses the next (InvalidUserGroupState), which the provider retries until
        # the create/delete timeout (10 min by default): room for a queue of concurrent stacks.
        aws.elasticache.UserGroupAssociation(
            f"{name}-cache-group", user_group_id=args.platform.cache_user_group_id,
            user_id=self.cache_user.user_id, opts=child(self, custom_timeouts=pulumi.CustomTimeouts(
                create=CACHE_GROUP_TIMEOUT, delete=CACHE_GROUP_TIMEOUT)))

    def _certificate(self, name: str, args: TenantInfraArgs, t: dict[str, str]
                     ) -> tuple[pulumi.Output[str] | None, pulumi.Output | list]:
        """The custom domain's certificate (us-east-1, where CloudFront reads it). Once attached
        it is the edge's only viewer certificate, so it names the tenant's own host too; that
        name's validation record is ours to write, in the platform zone. Returns the ARN to
        attach (None: not yet) and the records the domain's owner publishes (its own only)."""
        self.certificate: aws.acm.Certificate | None = None
        if not args.custom_domain:
            return None, []
        host = args.names.host
        us_east_1 = aws.Provider(f"{name}-us-east-1", region="us-east-1", opts=child(self))
        cert = aws.acm.Certificate(
            f"{name}-cert", domain_name=args.custom_domain, subject_alternative_names=[host],
            validation_method="DNS", tags=t, opts=child(self, provider=us_east_1))
        self.certificate = cert
        options = cert.domain_validation_options
        records = options.apply(lambda opts: [
            {"name": o.resource_record_name, "type": o.resource_record_type, "value": o.resource_record_value}
            for o in opts if o.domain_name == args.custom_domain])

        def validation_record(resource: str, zone_id: str, domain: str) -> aws.route53.Record:
            check = options.apply(lambda opts: validation_option(opts, domain))
            return aws.route53.Record(
                resource, zone_id=zone_id, ttl=60, allow_overwrite=True, name=check.resource_record_name,
                type=check.resource_record_type, records=[check.resource_record_value], opts=child(self))

        own = validation_record(f"{name}-host-cert-validation", args.zone_id, host)
        if args.custom_domain_zone_id:
            rec = validation_record(f"{name}-cert-validation", args.custom_domain_zone_id, args.custom_domain)
            done = aws.acm.CertificateValidation(
                f"{name}-cert-validated", certificate_arn=cert.arn, validation_record_fqdns=[rec.fqdn, own.fqdn],
                opts=child(self, provider=us_east_1))
            return done.certificate_arn, records
        if args.custom_domain_ready:
            return cert.arn, records
        return None, records
