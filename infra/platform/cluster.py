"""ECS cluster on an auto-scaling EC2 fleet through a capacity provider.

Managed scaling keeps the fleet just large enough for the tasks placed on it; services
place tasks with `infra.common.BINPACK`, so tenants are packed, not spread, and idle
instances drain and leave.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.common import assume_role, child, tags

ECS_AMI_PARAMETER = "/aws/service/ecs/optimized-ami/amazon-linux-2023/arm64/recommended/image_id"


@dataclass
class ClusterArgs:
    subnet_ids: list[pulumi.Input[str]]
    security_group_ids: list[pulumi.Input[str]]
    name: str = "hostplane"
    instance_type: str = "m7g.large"
    min_size: int = 1
    max_size: int = 50
    target_capacity_percent: int = 90


class Cluster(pulumi.ComponentResource):
    def __init__(self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("hostplane:platform:Cluster", name, None, opts)
        t = tags("cluster")
        self.cluster = aws.ecs.Cluster(f"{name}-cluster", name=args.name, tags=t, opts=child(self),
                                       settings=[{"name": "containerInsights", "value": "enabled"}])
        role = aws.iam.Role(f"{name}-instance", assume_role_policy=assume_role("ec2.amazonaws.com"),
                            tags=t, opts=child(self))
        for i, arn in enumerate((
            "arn:aws:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role",
            "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore",
        )):
            aws.iam.RolePolicyAttachment(f"{name}-instance-{i}", role=role.name, policy_arn=arn, opts=child(self))
        profile = aws.iam.InstanceProfile(f"{name}-instance", role=role.name, opts=child(self))
        ami = aws.ssm.get_parameter_output(name=ECS_AMI_PARAMETER)
        user_data = self.cluster.name.apply(lambda n: base64.b64encode(
            f"#!/bin/bash\necho ECS_CLUSTER={n} >> /etc/ecs/ecs.config\n"
            "echo ECS_ENABLE_TASK_IAM_ROLE=true >> /etc/ecs/ecs.config\n".encode()).decode())
        template = aws.ec2.LaunchTemplate(
            f"{name}-fleet", image_id=ami.value, instance_type=args.instance_type,
            iam_instance_profile={"arn": profile.arn}, vpc_security_group_ids=args.security_group_ids,
            user_data=user_data, metadata_options={"http_tokens": "required", "http_put_response_hop_limit": 1},
            tag_specifications=[{"resource_type": "instance", "tags": t}], tags=t, opts=child(self))
        self.fleet = aws.autoscaling.Group(
            f"{name}-fleet", min_size=args.min_size, max_size=args.max_size, vpc_zone_identifiers=args.subnet_ids,
            launch_template={"id": template.id, "version": "$Latest"}, protect_from_scale_in=True,
            tags=[{"key": "AmazonECSManaged", "value": "true", "propagate_at_launch": True}]
            + [{"key": k, "value": v, "propagate_at_launch": True} for k, v in t.items()],
            opts=child(self, ignore_changes=["desiredCapacity"]))
        self.capacity_provider = aws.ecs.CapacityProvider(
            f"{name}-fleet", name=f"{args.name}-fleet", tags=t, opts=child(self),
            auto_scaling_group_provider={
                "auto_scaling_group_arn": self.fleet.arn,
                "managed_termination_protection": "ENABLED",
                "managed_scaling": {"status": "ENABLED", "target_capacity": args.target_capacity_percent,
                                    "minimum_scaling_step_size": 1, "maximum_scaling_step_size": 10},
            })
        aws.ecs.ClusterCapacityProviders(
            f"{name}-providers", cluster_name=self.cluster.name,
            capacity_providers=[self.capacity_provider.name], opts=child(self),
            default_capacity_provider_strategies=[{"capacity_provider": self.capacity_provider.name,
                                                   "weight": 1, "base": 0}])
        self.register_outputs({"cluster_name": self.cluster.name, "cluster_arn": self.cluster.arn,
                               "capacity_provider": self.capacity_provider.name})
