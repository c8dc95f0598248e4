"""A tenant's private S3 bucket for static assets.

Private means: every public-access block on, no ACL grant to AllUsers or
AuthenticatedUsers. (The edge reads it with platform credentials; on AWS CloudFront
reaches it through origin access control, set by the tenant's Pulumi stack.) Removal
empties it first — every object version and delete marker, pending multipart uploads —
because S3 refuses to delete a bucket that holds anything.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from contracts.tenant import TenantNames
from services.resources.base import NO_OPTIONS, Ensured, Outcome, PermanentError, TenantOptions, ref

TENANT_TAG = "hostplane:tenant"
BLOCK_ALL = {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
             "RestrictPublicBuckets": True}
PUBLIC_GROUPS = ("http://acs.amazonaws.com/groups/global/AllUsers",
                 "http://acs.amazonaws.com/groups/global/AuthenticatedUsers")
_MISSING = ("404", "NoSuchBucket", "NotFound")
_PERMANENT = ("BucketAlreadyExists", "InvalidBucketName", "AccessDenied", "TooManyBuckets",
              "IllegalLocationConstraintException", "InvalidArgument")
DELETE_BATCH = 1000  # DeleteObjects limit


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _permanent(exc: ClientError, doing: str) -> Exception:
    code = _code(exc)
    return PermanentError(f"S3 refused to {doing}: {code}") if code in _PERMANENT else exc


class TenantBucket:
    """Ensure/remove `names.bucket` through an S3 client."""

    def __init__(self, client: Any, region: str) -> None:
        self.client = client
        self.region = region

    async def ensure(self, names: TenantNames, options: TenantOptions = NO_OPTIONS) -> Ensured[str]:
        bucket = names.bucket
        try:
            created = not await self._exists(bucket)
            if created:
                kwargs: dict[str, Any] = {}
                if self.region != "us-east-1":
                    kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
                await self.client.create_bucket(Bucket=bucket, **kwargs)
                await self.client.put_bucket_tagging(
                    Bucket=bucket, Tagging={"TagSet": [{"Key": TENANT_TAG, "Value": names.tenant_id}]}
                )
            changed = await self._block_public_access(bucket)
            changed = await self._private_acl(bucket) or changed
        except ClientError as exc:
            raise _permanent(exc, f"set up bucket {bucket}") from None
        return Ensured(Outcome.of(created, changed), bucket)

    async def _block_public_access(self, bucket: str) -> bool:
        try:
            current = (await self.client.get_public_access_block(Bucket=bucket))["PublicAccessBlockConfiguration"]
        except ClientError as exc:
            if _code(exc) != "NoSuchPublicAccessBlockConfiguration":
                raise
            current = {}
        if all(current.get(k) for k in BLOCK_ALL):
            return False
        await self.client.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=BLOCK_ALL)
        return True

    async def _private_acl(self, bucket: str) -> bool:
        grants = (await self.client.get_bucket_acl(Bucket=bucket)).get("Grants", [])
        if not any(g.get("Grantee", {}).get("URI") in PUBLIC_GROUPS for g in grants):
            return False
        await self.client.put_bucket_acl(Bucket=bucket, ACL="private")
        return True

    async def is_private(self, names: TenantNames) -> bool:
        try:
            block = (await self.client.get_public_access_block(Bucket=names.bucket))["PublicAccessBlockConfiguration"]
        except ClientError:
            return False
        grants = (await self.client.get_bucket_acl(Bucket=names.bucket)).get("Grants", [])
        return all(block.get(k) for k in BLOCK_ALL) and not any(
            g.get("Grantee", {}).get("URI") in PUBLIC_GROUPS for g in grants
        )

    async def remove(self, names: TenantNames) -> list[str]:
        bucket = names.bucket
        try:
            if not await self._exists(bucket):
                return []
            await self._empty(bucket)
            await self.client.delete_bucket(Bucket=bucket)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return []
            raise _permanent(exc, f"delete bucket {bucket}") from None
        return [ref("bucket", bucket)]

    async def _empty(self, bucket: str) -> None:
        uploads = self.client.get_paginator("list_multipart_uploads")
        async for page in uploads.paginate(Bucket=bucket):
            for up in page.get("Uploads", []):
                await self.client.abort_multipart_upload(Bucket=bucket, Key=up["Key"], UploadId=up["UploadId"])
        versions = self.client.get_paginator("list_object_versions")
        async for page in versions.paginate(Bucket=bucket):
            items = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                     for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
            for i in range(0, len(items), DELETE_BATCH):
                await self.client.delete_objects(
                    Bucket=bucket, Delete={"Objects": items[i:i + DELETE_BATCH], "Quiet": True}
                )

    async def _exists(self, bucket: str) -> bool:
        try:
            await self.client.head_bucket(Bucket=bucket)
            return True
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return False
            raise

    async def existing(self, names: TenantNames) -> list[str]:
        return [ref("bucket", names.bucket)] if await self._exists(names.bucket) else []

    async def all_names(self) -> list[str]:
        return sorted(b["Name"] for b in (await self.client.list_buckets()).get("Buckets", []))
