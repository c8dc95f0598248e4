"""The platform stack: every shared component, wired together, and the outputs tenant
stacks read through a StackReference."""

from __future__ import annotations

import pulumi

from infra.platform.cluster import Cluster, ClusterArgs
from infra.platform.control_plane import ControlPlane, ControlPlaneArgs, Secrets
from infra.platform.data import Cache, DataArgs, Database
from infra.platform.edge import Edge, EdgeArgs, PooledEdge, PooledEdgeArgs
from infra.platform.messaging import Messaging, MessagingArgs
from infra.platform.network import Network, NetworkArgs
from infra.platform.storage import ArtifactFileSystem, ArtifactsArgs


class PlatformStack(pulumi.ComponentResource):
    def __init__(self, name: str, config: pulumi.Config, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("hostplane:platform:PlatformStack", name, None, opts)
        prefix = config.get("prefix") or "hostplane"
        parent = pulumi.ResourceOptions(parent=self)
        net = Network("net", NetworkArgs(name=prefix), parent)
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
        control = ControlPlane("cp", ControlPlaneArgs(
            cluster_arn=cluster.cluster.arn, subnet_ids=net.private_subnet_ids,
            control_security_group_id=net.control_sg.id, admin_security_group_id=net.admin_sg.id,
            bus_arn=bus.bus.arn, queue_arns={s: q.queue.arn for s, q in bus.queues.items()},
            file_system_arn=efs.fs.arn, file_system_id=efs.fs.id, image=config.require("image"),
            state_bucket=config.require("stateBucket"), prefix=prefix), secrets, parent)
        origin_verify = config.require_secret("originVerify")
        edge = Edge("edge", EdgeArgs(
            vpc_id=net.vpc.id, public_subnet_ids=[s.id for s in net.public_subnets],
            private_subnet_ids=net.private_subnet_ids, alb_security_group_id=net.alb_sg.id,
            caddy_security_group_id=net.caddy_sg.id, cluster_arn=cluster.cluster.arn,
            certificate_arn=config.require("albCertificateArn"), origin_verify=origin_verify,
            execution_role_arn=control.execution_role.arn, prefix=prefix), parent)
        pooled = PooledEdge("pooled", PooledEdgeArgs(edge.alb.dns_name, origin_verify, prefix), parent)
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
            "originVerify": origin_verify,
            "fileSystemId": efs.fs.id,
            "fileSystemArn": efs.fs.arn,
            "cacheUserGroupId": cache.user_group.user_group_id,
            "databaseEndpoint": db.cluster.endpoint,
            "kmsKeyArn": secrets.key.arn,
            "executionRoleArn": control.execution_role.arn,
            "pooledDistributionId": pooled.distribution.id,
            "pooledDistributionArn": pooled.distribution.arn,
            "pooledKvsArn": pooled.kvs.arn,
            "pooledRoutingEndpoint": pooled.connection_group.routing_endpoint,
            "busName": bus.bus.name,
            "busArn": bus.bus.arn,
        }
        self.register_outputs(self.outputs)


def platform_program() -> None:
    stack = PlatformStack("hostplane", pulumi.Config("hostplane"))
    for key, value in stack.outputs.items():
        pulumi.export(key, value)
