"""VPC: public subnets for the ALB and NAT, private subnets for every task and database;
security groups that let only runtimes (and the control-plane tasks that administer
tenants) reach the database and the cache, and only the ALB reach Caddy and the API."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from infra.common import child, tags

PG_PORT = 5432
CACHE_PORT = 6379
NFS_PORT = 2049
API_PORT = 8400  # the API task's listener (HOSTPLANE_API_PORT), the ALB's target port
HTTPS_PORT = 443


@dataclass
class NetworkArgs:
    cidr: str = "10.40.0.0/16"
    zones: int = 3
    name: str = "hostplane"
    # Who may reach the ALB directly (not through CloudFront): the CLI and the dashboard at
    # api.<base domain>. Tenant traffic still needs the origin-verify header (edge.py).
    api_client_cidrs: list[str] = field(default_factory=lambda: ["0.0.0.0/0"])
    extra_tags: dict[str, str] = field(default_factory=dict)


class Network(pulumi.ComponentResource):
    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("hostplane:platform:Network", name, None, opts)
        t = tags("network", **args.extra_tags)
        azs = aws.get_availability_zones_output(state="available").names
        self.vpc = aws.ec2.Vpc(f"{name}-vpc", cidr_block=args.cidr, enable_dns_hostnames=True,
                               enable_dns_support=True, tags={**t, "Name": args.name}, opts=child(self))
        igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=self.vpc.id, tags=t, opts=child(self))
        public_rt = aws.ec2.RouteTable(f"{name}-public", vpc_id=self.vpc.id, tags=t, opts=child(self),
                                       routes=[{"cidr_block": "0.0.0.0/0", "gateway_id": igw.id}])
        self.public_subnets: list[aws.ec2.Subnet] = []
        self.private_subnets: list[aws.ec2.Subnet] = []
        for i in range(args.zones):
            az = azs.apply(lambda names, i=i: names[i % len(names)])
            pub = aws.ec2.Subnet(f"{name}-public-{i}", vpc_id=self.vpc.id, availability_zone=az,
                                 cidr_block=f"10.40.{i}.0/24", map_public_ip_on_launch=False,
                                 tags={**t, "tier": "public"}, opts=child(self))
            aws.ec2.RouteTableAssociation(f"{name}-public-{i}", subnet_id=pub.id,
                                          route_table_id=public_rt.id, opts=child(self))
            priv = aws.ec2.Subnet(f"{name}-private-{i}", vpc_id=self.vpc.id, availability_zone=az,
                                  cidr_block=f"10.40.{64 + i * 16}.0/20", tags={**t, "tier": "private"},
                                  opts=child(self))
            self.public_subnets.append(pub)
            self.private_subnets.append(priv)
        # One NAT gateway (cost over zone redundancy; see README for the trade-off).
        eip = aws.ec2.Eip(f"{name}-nat", domain="vpc", tags=t, opts=child(self))
        nat = aws.ec2.NatGateway(f"{name}-nat", allocation_id=eip.id, subnet_id=self.public_subnets[0].id,
                                 tags=t, opts=child(self))
        private_rt = aws.ec2.RouteTable(f"{name}-private", vpc_id=self.vpc.id, tags=t, opts=child(self),
                                        routes=[{"cidr_block": "0.0.0.0/0", "nat_gateway_id": nat.id}])
        for i, priv in enumerate(self.private_subnets):
            aws.ec2.RouteTableAssociation(f"{name}-private-{i}", subnet_id=priv.id,
                                          route_table_id=private_rt.id, opts=child(self))

        def sg(role: str, description: str) -> aws.ec2.SecurityGroup:
            return aws.ec2.SecurityGroup(
                f"{name}-{role}", vpc_id=self.vpc.id, description=description, tags={**t, "role": role},
                egress=[{"protocol": "-1", "from_port": 0, "to_port": 0, "cidr_blocks": ["0.0.0.0/0"]}],
                opts=child(self))

        self.alb_sg = sg("alb", "shared ALB: HTTPS from CloudFront only")
        self.caddy_sg = sg("caddy", "Caddy edge tasks: from the ALB only")
        self.runtime_sg = sg("runtime", "tenant runtimes: from Caddy only")
        self.control_sg = sg("control", "control-plane tasks")
        self.api_sg = sg("api", "API tasks: the API port from the ALB only")
        self.admin_sg = sg("tenant-admin", "control-plane tasks that create tenant databases and users")
        self.db_sg = sg("database", "Aurora: runtimes and tenant admins only")
        self.cache_sg = sg("cache", "Valkey: runtimes and tenant admins only")
        self.efs_sg = sg("efs", "artifact file system: runtimes and the control plane")

        cloudfront = aws.ec2.get_managed_prefix_list_output(name="com.amazonaws.global.cloudfront.origin-facing")
        self._allow("alb-from-cloudfront", self.alb_sg, HTTPS_PORT, prefix_list=cloudfront.id)
        for i, cidr in enumerate(args.api_client_cidrs):
            self._allow(f"alb-from-api-clients-{i}", self.alb_sg, HTTPS_PORT, cidr=cidr)
        self._allow("caddy-from-alb", self.caddy_sg, 80, source=self.alb_sg)
        self._allow("api-from-alb", self.api_sg, API_PORT, source=self.alb_sg)
        # Runtimes run in bridge mode on the fleet (dynamic host ports, found through SRV
        # records): awsvpc would cap tasks per instance at its ENI count.
        self._allow("runtime-from-caddy", self.runtime_sg, 32768, to_port=65535, source=self.caddy_sg)
        for target, port in ((self.db_sg, PG_PORT), (self.cache_sg, CACHE_PORT)):
            role = "db" if target is self.db_sg else "cache"
            self._allow(f"{role}-from-runtime", target, port, source=self.runtime_sg)
            self._allow(f"{role}-from-admin", target, port, source=self.admin_sg)
        self._allow("efs-from-runtime", self.efs_sg, NFS_PORT, source=self.runtime_sg)
        # Network path for control tasks; IAM lets only the artifact writers mount (permissions.py).
        self._allow("efs-from-control", self.efs_sg, NFS_PORT, source=self.control_sg)
        self.register_outputs({
            "vpc_id": self.vpc.id,
            "private_subnet_ids": [s.id for s in self.private_subnets],
            "public_subnet_ids": [s.id for s in self.public_subnets],
        })

    def _allow(self, name: str, target: aws.ec2.SecurityGroup, port: int, *, to_port: int | None = None,
               source: aws.ec2.SecurityGroup | None = None, prefix_list: pulumi.Input[str] | None = None,
               cidr: str | None = None) -> None:
        aws.vpc.SecurityGroupIngressRule(
            name, security_group_id=target.id, ip_protocol="tcp", from_port=port, to_port=to_port or port,
            referenced_security_group_id=source.id if source else None, prefix_list_id=prefix_list,
            cidr_ipv4=cidr, description=name, opts=child(self))

    @property
    def private_subnet_ids(self) -> list[pulumi.Output[str]]:
        return [s.id for s in self.private_subnets]
