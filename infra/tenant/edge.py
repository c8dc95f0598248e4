"""A tenant's static bucket and its edge, `dedicated` or `pooled`, plus DNS and the
custom-domain certificate.

dedicated: its own CloudFront distribution, two origins (bucket for /static/*, the shared
  ALB for the rest) and two functions (viewer request sets X-Tenant-Id; viewer response
  adds security headers).
pooled: a distribution tenant on the platform's multi-tenant distribution, and a
  KeyValueStore entry host → tenant id; no distribution of its own, so the account's
  distribution quota (200 by default) is never the limit.
"""

from __future__ import annotations

from pathlib import Path

import pulumi
import pulumi_aws as aws

from infra.common import child, policy_json, statement, tags
from infra.platform.edge import ORIGIN_VERIFY_HEADER
from infra.tenant.args import TenantInfraArgs

FUNCTIONS = Path(__file__).resolve().parent.parent / "functions"
CACHING_DISABLED = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"  # AWS managed cache policies (fixed ids)
CACHING_OPTIMIZED = "658327ea-f89d-4fab-a63d-7e88639e58f6"
ALL_VIEWER_EXCEPT_HOST = "b689b0a8-53d0-40ab-baf2-68738e2966ac"  # managed origin request policy
# How long CloudFront waits for the ALB's first byte (OriginReadTimeout): 30 s by default, 60 s
# the most without a quota increase. A wake on AWS takes tens of seconds (docs/scale-to-zero.md).
ORIGIN_READ_TIMEOUT_S = 60


class StaticBucket(pulumi.ComponentResource):
    """Private: public access blocked, ACLs disabled, encrypted; read only by CloudFront (OAC)."""

    def __init__(self, name: str, args: TenantInfraArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("hostplane:tenant:StaticBucket", name, None, opts)
        t = tags("static", args.tenant_id, **args.extra_tags)
        self.bucket = aws.s3.Bucket(f"{name}-bucket", bucket=args.names.bucket, force_destroy=True, tags=t,
                                    opts=child(self))
        self.public_access = aws.s3.BucketPublicAccessBlock(
            f"{name}-no-public", bucket=self.bucket.id, block_public_acls=True, block_public_policy=True,
            ignore_public_acls=True, restrict_public_buckets=True, opts=child(self))
        aws.s3.BucketOwnershipControls(f"{name}-owner", bucket=self.bucket.id, opts=child(self),
                                       rule={"object_ownership": "BucketOwnerEnforced"})
        aws.s3.BucketServerSideEncryptionConfiguration(f"{name}-sse", bucket=self.bucket.id, opts=child(self),
            rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}])
        self.register_outputs({"bucket": self.bucket.bucket, "arn": self.bucket.arn})

    def allow_distribution(self, distribution_arn: pulumi.Input[str]) -> None:
        aws.s3.BucketPolicy(
            f"{self._name}-policy", bucket=self.bucket.id,
            opts=child(self, depends_on=[self.public_access]), policy=policy_json(
                statement(["s3:GetObject"], pulumi.Output.concat(self.bucket.arn, "/*"), sid="CloudFrontOnly",
                          principal={"Service": "cloudfront.amazonaws.com"},
                          condition={"StringEquals": {"AWS:SourceArn": distribution_arn}}),
                statement(["s3:*"], [self.bucket.arn, pulumi.Output.concat(self.bucket.arn, "/*")],
                          effect="Deny", sid="TlsOnly", principal={"AWS": "*"},
                          condition={"Bool": {"aws:SecureTransport": "false"}})))


def _behavior(origin: str, methods: list[str], cache_policy: str, functions: list[dict], **kw) -> dict:
    return {"target_origin_id": origin, "viewer_protocol_policy": "redirect-to-https", "compress": True,
            "allowed_methods": methods, "cached_methods": ["GET", "HEAD"], "cache_policy_id": cache_policy,
            "function_associations": functions, **kw}


class DedicatedEdge(pulumi.ComponentResource):
    def __init__(self, name: str, args: TenantInfraArgs, bucket: StaticBucket,
                 certificate_arn: pulumi.Input[str] | None, aliases: list[str],
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("hostplane:tenant:DedicatedEdge", name, None, opts)
        t = tags("edge", args.tenant_id, **args.extra_tags)
        fn_name = f"{args.prefix}-{args.tenant_id}"
        request_fn = aws.cloudfront.Function(
            f"{name}-tenant-header", name=f"{fn_name}-req", runtime="cloudfront-js-2.0", publish=True,
            code=(FUNCTIONS / "dedicated_viewer_request.js").read_text().replace("__TENANT_ID__", args.tenant_id),
            comment=f"X-Tenant-Id for {args.tenant_id}", tags=t, opts=child(self))
        response_fn = aws.cloudfront.Function(
            f"{name}-security-headers", name=f"{fn_name}-resp", runtime="cloudfront-js-2.0", publish=True,
            code=(FUNCTIONS / "viewer_response.js").read_text(), tags=t, opts=child(self))
        oac = aws.cloudfront.OriginAccessControl(
            f"{name}-oac", name=f"{fn_name}-static", origin_access_control_origin_type="s3",
            signing_behavior="always", signing_protocol="sigv4", opts=child(self))
        functions = [{"event_type": "viewer-request", "function_arn": request_fn.arn},
                     {"event_type": "viewer-response", "function_arn": response_fn.arn}]
        viewer_cert = ({"acm_certificate_arn": certificate_arn, "ssl_support_method": "sni-only",
                        "minimum_protocol_version": "TLSv1.2_2021"}
                       if certificate_arn is not None else {"cloudfront_default_certificate": True})
        # Disabled while not routed; the `up` returns once CloudFront accepted the change
        # (propagation takes minutes; the Route 53 record is already gone then).
        self.distribution = aws.cloudfront.Distribution(
            f"{name}-cdn", enabled=args.routed, wait_for_deployment=False, is_ipv6_enabled=True, http_version="http2and3", aliases=aliases,
            comment=f"{args.prefix} tenant {args.tenant_id}", price_class="PriceClass_100", tags=t,
            origins=[
                {"origin_id": "static", "domain_name": bucket.bucket.bucket_regional_domain_name,
                 "origin_access_control_id": oac.id},
                # Not the ALB's *.elb.amazonaws.com name: no certificate can match it.
                {"origin_id": "alb", "domain_name": args.platform.origin_domain,
                 "custom_headers": [{"name": ORIGIN_VERIFY_HEADER, "value": args.platform.origin_verify}],
                 "custom_origin_config": {"http_port": 80, "https_port": 443, "origin_protocol_policy": "https-only",
                                          "origin_ssl_protocols": ["TLSv1.2"],
                                          "origin_read_timeout": ORIGIN_READ_TIMEOUT_S}},
            ],
            default_cache_behavior=_behavior("alb", ["GET", "HEAD", "OPTIONS", "PUT", "POST", "PATCH", "DELETE"],
                                             CACHING_DISABLED, functions,
                                             origin_request_policy_id=ALL_VIEWER_EXCEPT_HOST),
            ordered_cache_behaviors=[_behavior("static", ["GET", "HEAD"], CACHING_OPTIMIZED, functions,
                                               path_pattern="/static/*")],
            restrictions={"geo_restriction": {"restriction_type": "none"}},
            viewer_certificate=viewer_cert, opts=child(self))
        bucket.allow_distribution(self.distribution.arn)
        self.domain_name, self.zone_id = self.distribution.domain_name, self.distribution.hosted_zone_id
        self.register_outputs({"distribution_id": self.distribution.id, "domain_name": self.domain_name})


class PooledTenantEdge(pulumi.ComponentResource):
    def __init__(self, name: str, args: TenantInfraArgs, bucket: StaticBucket,
                 certificate_arn: pulumi.Input[str] | None, domains: list[str],
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("hostplane:tenant:PooledTenantEdge", name, None, opts)
        t = tags("edge", args.tenant_id, **args.extra_tags)
        p = args.platform
        # Not routed: no entry, so the viewer-request function answers 404 at once.
        self.entries = [aws.cloudfront.KeyvaluestoreKey(
            f"{name}-host-{i}", key_value_store_arn=p.pooled_kvs_arn, key=host, value=args.tenant_id,
            opts=child(self)) for i, host in enumerate(domains)] if args.routed else []
        self.tenant = aws.cloudfront.DistributionTenant(
            f"{name}-tenant", name=f"{args.prefix}-{args.tenant_id}", distribution_id=p.pooled_distribution_id,
            enabled=args.routed, domains=[{"domain": d} for d in domains],
            connection_group_id=p.pooled_connection_group_id,  # the group whose endpoint DNS names
            parameters=[{"name": "tenant", "value": args.tenant_id}],
            customizations={"certificate": {"arn": certificate_arn}} if certificate_arn is not None else None,
            tags=t, opts=child(self, depends_on=self.entries))
        bucket.allow_distribution(p.pooled_distribution_arn)
        self.domain_name = pulumi.Output.from_input(p.pooled_routing_endpoint)
        self.register_outputs({"distribution_tenant_id": self.tenant.id, "domain_name": self.domain_name})
