"""The artifact file system: EFS, encrypted, one mount target per private subnet.

Tenant stacks add an access point each (root = the tenant's artifact folder, a POSIX
user per tenant), so a runtime task can reach only its own releases."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.common import child, tags


@dataclass
class ArtifactsArgs:
    subnet_ids: list[pulumi.Input[str]]
    security_group_id: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str]


class ArtifactFileSystem(pulumi.ComponentResource):
    def __init__(self, name: str, args: ArtifactsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("hostplane:platform:ArtifactFileSystem", name, None, opts)
        t = tags("artifacts")
        self.fs = aws.efs.FileSystem(
            f"{name}-efs", encrypted=True, kms_key_id=args.kms_key_arn, performance_mode="generalPurpose",
            throughput_mode="elastic", tags={**t, "Name": "hostplane-artifacts"}, opts=child(self),
            lifecycle_policies=[{"transition_to_ia": "AFTER_30_DAYS"}])
        self.mount_targets = [
            aws.efs.MountTarget(f"{name}-mount-{i}", file_system_id=self.fs.id, subnet_id=subnet,
                                security_groups=[args.security_group_id], opts=child(self))
            for i, subnet in enumerate(args.subnet_ids)
        ]
        aws.efs.FileSystemPolicy(f"{name}-tls-only", file_system_id=self.fs.id, opts=child(self),
                                 policy=self.fs.arn.apply(_tls_only))
        self.register_outputs({"file_system_id": self.fs.id, "file_system_arn": self.fs.arn})


def _tls_only(arn: str) -> str:
    import json

    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "DenyWithoutTls", "Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "*",
        "Resource": arn, "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]})
