"""The shared data servers: one Aurora PostgreSQL Serverless v2 cluster (tenant databases
are added to it logically by the provisioner) and one ElastiCache for Valkey replication
group with RBAC (the provisioner's tenant stacks add users to its user group).

Both sit in private subnets behind security groups that admit only runtimes and the
tenant-admin tasks (infra.platform.network). The Aurora admin password is generated and
kept by AWS in Secrets Manager under the platform KMS key; the Valkey admin password
comes from stack config as a Pulumi secret (encrypted by the KMS secrets provider).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.common import child, tags

VALKEY_ENGINE_VERSION = "8.2"
AURORA_ENGINE_VERSION = "17.5"


@dataclass
class DataArgs:
    subnet_ids: list[pulumi.Input[str]]
    db_security_group_id: pulumi.Input[str]
    cache_security_group_id: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str]
    name: str = "hostplane"
    min_acu: float = 0.5
    max_acu: float = 32
    cache_node_type: str = "cache.t4g.medium"
    cache_replicas: int = 1


class Database(pulumi.ComponentResource):
    def __init__(self, name: str, args: DataArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("hostplane:platform:Database", name, None, opts)
        t = tags("database")
        subnets = aws.rds.SubnetGroup(f"{name}-db", subnet_ids=args.subnet_ids, tags=t, opts=child(self))
        self.cluster = aws.rds.Cluster(
            f"{name}-aurora", cluster_identifier=f"{args.name}-tenants", engine="aurora-postgresql",
            engine_mode="provisioned", engine_version=AURORA_ENGINE_VERSION, database_name="hostplane",
            master_username="hostplane_admin", manage_master_user_password=True,
            master_user_secret_kms_key_id=args.kms_key_arn, storage_encrypted=True, kms_key_id=args.kms_key_arn,
            db_subnet_group_name=subnets.name, vpc_security_group_ids=[args.db_security_group_id],
            serverlessv2_scaling_configuration={"min_capacity": args.min_acu, "max_capacity": args.max_acu},
            backup_retention_period=7, deletion_protection=True, copy_tags_to_snapshot=True,
            iam_database_authentication_enabled=True, final_snapshot_identifier=f"{args.name}-tenants-final",
            tags=t, opts=child(self))
        self.writer = aws.rds.ClusterInstance(
            f"{name}-aurora-writer", cluster_identifier=self.cluster.id, instance_class="db.serverless",
            engine=self.cluster.engine, engine_version=self.cluster.engine_version,
            performance_insights_enabled=True, tags=t, opts=child(self))
        self.register_outputs({"endpoint": self.cluster.endpoint,
                               "admin_secret_arn": self.cluster.master_user_secrets[0].secret_arn})


class Cache(pulumi.ComponentResource):
    """Valkey with RBAC: the `default` user is disabled; an admin user for the control plane;
    tenant users join `self.user_group` from their own stacks."""

    def __init__(self, name: str, args: DataArgs, admin_password: pulumi.Input[str],
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("hostplane:platform:Cache", name, None, opts)
        t = tags("cache")
        admin_password = pulumi.Output.from_input(admin_password).apply(check_cache_password)
        subnets = aws.elasticache.SubnetGroup(f"{name}-cache", subnet_ids=args.subnet_ids, tags=t, opts=child(self))
        # A user group for the valkey engine holds only password (or IAM) users (ElastiCache
        # RBAC), so `default` has a password, derived and given to no one, and is `off`: it
        # cannot authenticate whatever the password.
        default = aws.elasticache.User(
            f"{name}-default", user_id=f"{args.name}-default", user_name="default", engine="valkey",
            access_string="off -@all", tags=t, opts=child(self),
            authentication_mode={"type": "password", "passwords": [pulumi.Output.secret(
                pulumi.Output.from_input(admin_password).apply(_disabled_user_password))]})
        admin = aws.elasticache.User(
            f"{name}-admin", user_id=f"{args.name}-admin", user_name=f"{args.name}-admin", engine="valkey",
            access_string="on ~* &* +@all -@dangerous +info +scan +acl|whoami",
            authentication_mode={"type": "password", "passwords": [admin_password]}, tags=t, opts=child(self))
        self.user_group = aws.elasticache.UserGroup(
            f"{name}-users", user_group_id=f"{args.name}-tenants", engine="valkey",
            user_ids=[default.user_id, admin.user_id], tags=t,
            # Tenant stacks add their users through UserGroupAssociation: the member list is
            # this program's only at creation. A replacement would be a new, empty group (every
            # tenant user detached, their stacks' associations stale): protected, so it takes a
            # deliberate `pulumi state unprotect` (infra/README.md).
            opts=child(self, ignore_changes=["userIds"], protect=True))
        self.group = aws.elasticache.ReplicationGroup(
            f"{name}-valkey", replication_group_id=f"{args.name}-cache", description="hostplane tenant cache",
            engine="valkey", engine_version=VALKEY_ENGINE_VERSION, node_type=args.cache_node_type,
            num_cache_clusters=1 + args.cache_replicas, automatic_failover_enabled=args.cache_replicas > 0,
            multi_az_enabled=args.cache_replicas > 0, transit_encryption_enabled=True,
            at_rest_encryption_enabled=True, kms_key_id=args.kms_key_arn, user_group_ids=[self.user_group.id],
            subnet_group_name=subnets.name, security_group_ids=[args.cache_security_group_id], port=6379,
            tags=t, opts=child(self))
        self.register_outputs({"endpoint": self.group.primary_endpoint_address,
                               "user_group_id": self.user_group.user_group_id})


def _disabled_user_password(admin_password: str) -> str:
    """64 hex characters (ElastiCache: 16-128 printable), not the admin's and not revealing it."""
    return hashlib.sha256(f"hostplane-default-user-off:{admin_password}".encode()).hexdigest()


# ElastiCache user passwords: 16-128 printable characters, none of / " @ (CreateUser,
# AuthenticationMode); the admin's also sits in the rediss:// URL of the platform secret, so
# nothing a URL's user-info part would misread (% # ? and the rest of RFC 3986's delimiters).
CACHE_PASSWORD = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=:-]{16,128}")


def check_cache_password(password: str) -> str:
    """The password, or a ValueError that names the rule (never the value)."""
    if not CACHE_PASSWORD.fullmatch(password):
        raise ValueError("hostplane:cacheAdminPassword must be 16-128 characters of A-Z a-z 0-9 . _ ~ - "
                         "(and ! $ & ' ( ) * + , ; = :), e.g. `openssl rand -hex 32`")
    return password
