"""The platform stack: every shared component, wired together, and the outputs tenant
stacks read through a StackReference."""

from __future__ import annotations

import ipaddress

import pulumi

from infra.common import installation
from infra.platform.cluster import Cluster, ClusterArgs
from infra.platform.control_plane import ApiEndpoint, ControlPlane, ControlPlaneArgs, Secrets, TenantStackTarget
from infra.platform.data import Cache, DataArgs, Database
from infra.platform.edge import Edge, EdgeArgs, PooledEdge, PooledEdgeArgs
from infra.platform.messaging import Messaging, MessagingArgs
from infra.platform.network import Network, NetworkArgs
from infra.platform.storage import ArtifactFileSystem, ArtifactsArgs


class PlatformStack(pulumi.ComponentResource):
    def __init__(self, name: str, config: pulumi.Config, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("hostplane:platform:PlatformStack", name, None, opts)
        prefix = installation()  # hostplane:prefix, checked
        parent = pulumi.ResourceOptions(parent=self)
        net = Network("net", NetworkArgs(name=prefix, **api_clients(config)), parent)
        secrets = Secrets("secrets", prefix, parent)
        bus = Messaging("bus", MessagingArgs(prefix=prefix), parent)
        cluster = Cluster("ecs", ClusterArgs(subnet_ids=net.private_subnet_ids, name=prefix,
                                             security_group_ids=[net.runtime_sg.id]), parent)
        data = DataArgs(subnet_ids=net.private_subnet_ids, db_security_group_id=net.db_sg.id,
                        cache_security_group_id=net.cache_sg.id, kms_key_arn=secrets.key.arn, name=prefix)
        db = Database("db", data, parent)
        cache = Cache("cache", data, config.require_secret("cacheAdminPassword"), parent)
        efs = ArtifactFileSystem("artifacts", ArtifactsArgs(net.private_subnet_ids, net.efs_sg.id,
                                                            secrets.key.arn), parent)
        origin_verify = config.require_secret("originVerify")
        zone_id, base_domain = config.require("zoneId"), config.require("baseDomain")
        edge = Edge("edge", EdgeArgs(
            vpc_id=net.vpc.id, public_subnet_ids=[s.id for s in net.public_subnets],
            private_subnet_ids=net.private_subnet_ids, alb_security_group_id=net.alb_sg.id,
            caddy_security_group_id=net.caddy_sg.id, cluster_arn=cluster.cluster.arn, zone_id=zone_id,
            base_domain=base_domain, origin_verify=origin_verify, prefix=prefix), parent)
        pooled = PooledEdge("pooled", PooledEdgeArgs(edge.origin_domain, origin_verify, prefix), parent)
        state_bucket = config.require("stateBucket")
        control = ControlPlane("cp", ControlPlaneArgs(
            cluster_arn=cluster.cluster.arn, cluster_name=cluster.cluster.name, subnet_ids=net.private_subnet_ids,
            control_security_group_id=net.control_sg.id, admin_security_group_id=net.admin_sg.id,
            bus_arn=bus.bus.arn, queue_arns={s: q.queue.arn for s, q in bus.queues.items()},
            dlq_arns={s: q.dlq.arn for s, q in bus.queues.items()},
            file_system_arn=efs.fs.arn, file_system_id=efs.fs.id, namespace_arn=edge.namespace.arn,
            pooled_kvs_arn=pooled.kvs.arn, image=config.require("image"), state_bucket=state_bucket,
            state_key_alias=config.get("stateKeyAlias") or f"alias/{prefix}-state",
            tenant_stacks=TenantStackTarget(
                # The tenant stacks live in the platform stack's own backend (their StackReference
                # resolves there): deploy the platform with PULUMI_BACKEND_URL set to this URL.
                state_url=f"s3://{state_bucket}/{prefix}", platform_stack=platform_stack_name(),
                tenant_image=config.get("tenantImage") or config.require("image"), zone_id=zone_id,
                base_domain=base_domain, wildcard_certificate_arn=config.require("wildcardCertificateArn"),
                edge=config.get("edge") or "pooled"),
            api=ApiEndpoint(target_group_arn=edge.api_target_group_arn, security_group_id=net.api_sg.id,
                            alb_subnet_cidrs=[s.cidr_block for s in net.public_subnets]),
            prefix=prefix), secrets, parent)
        self.outputs = {
            "prefix": prefix,
            "vpcId": net.vpc.id,
            "privateSubnetIds": net.private_subnet_ids,
            "runtimeSecurityGroupId": net.runtime_sg.id,
            "clusterArn": cluster.cluster.arn,
            "capacityProvider": cluster.capacity_provider.name,
            "namespaceId": edge.namespace.id,
            "namespaceName": edge.namespace.name,
            "albDnsName": edge.alb.dns_name,
            "albZoneId": edge.alb.zone_id,
            "albArnSuffix": edge.alb.arn_suffix,
            "originDomain": edge.origin_domain,
            "apiUrl": f"https://{edge.api_domain}",  # the CLI's HOSTPLANE_API_URL (infra/README.md)
            "originVerify": origin_verify,
            "fileSystemId": efs.fs.id,
            "fileSystemArn": efs.fs.arn,
            "cacheUserGroupId": cache.user_group.user_group_id,
            "databaseEndpoint": db.cluster.endpoint,
            "kmsKeyArn": secrets.key.arn,
            "kmsAlias": secrets.alias.name,
            "executionRoleArn": control.execution_role.arn,
            "pooledDistributionId": pooled.distribution.id,
            "pooledDistributionArn": pooled.distribution.arn,
            "pooledKvsArn": pooled.kvs.arn,
            "pooledRoutingEndpoint": pooled.connection_group.routing_endpoint,
            "pooledConnectionGroupId": pooled.connection_group.id,
            "busName": bus.bus.name,
            "busArn": bus.bus.arn,
        }
        self.register_outputs(self.outputs)


def api_clients(config: pulumi.Config) -> dict[str, list[str]]:
    """`hostplane:apiAllowedCidrs` (a JSON list of IPv4 CIDRs; the ALB is IPv4-only), else the
    network's default: anywhere (every API call needs the bearer token)."""
    cidrs = config.get_object("apiAllowedCidrs")
    if cidrs is None:
        return {}
    try:
        if not isinstance(cidrs, list):
            raise TypeError(f"got {cidrs!r}")
        return {"api_client_cidrs": [str(ipaddress.IPv4Network(str(c))) for c in cidrs]}
    except (TypeError, ValueError) as exc:
        raise ValueError(f"hostplane:apiAllowedCidrs must be a JSON list of IPv4 CIDRs ({exc})") from None


def platform_stack_name() -> str:
    """This stack's fully qualified name, as a tenant stack's StackReference spells it. A DIY
    (S3) backend has the one organization `organization`."""
    return f"{pulumi.get_organization() or 'organization'}/{pulumi.get_project()}/{pulumi.get_stack()}"


def platform_program() -> None:
    stack = PlatformStack("hostplane", pulumi.Config("hostplane"))
    for key, value in stack.outputs.items():
        pulumi.export(key, value)
