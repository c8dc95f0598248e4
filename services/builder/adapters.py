"""The builder's I/O: specs and source trees stored by the API (read-only), the tenant's
releases (Releases: the artifact store off the event loop), the tenant's static bucket."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import mimetypes
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from artifacts.releases import is_copy, mark_copy, prune_releases
from artifacts.store import ARTIFACT, ArtifactStore, Manifest, Pointer, store_root
from contracts.tenant import TenantNames, tenant_names
from core.aws import aws_client
from core.settings import Settings
from contracts.envelope import Envelope
from events.recorded import RecordedRequests
from artifacts.inputs import load_source_body, load_spec_body


class StoredInputs:
    """Specs and source zips the API stored content-addressed, and the requests it
    recorded (the builder only reads)."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self._requests = RecordedRequests(pool)

    async def unrecorded(self, envelope: Envelope, fields: tuple[str, ...]) -> str | None:
        """Why the API did not record exactly this command (None: it did); events.recorded."""
        return await self._requests.unrecorded(envelope, fields)

    async def superseded(self, envelope: Envelope) -> str | None:
        """The kind of a newer request than this command's (None: it is the latest intent)."""
        return await self._requests.superseded(envelope)

    async def spec_body(self, digest: str) -> str | None:
        async with self.pool.acquire() as conn:
            return await load_spec_body(conn, digest)

    async def source_body(self, digest: str) -> bytes | None:
        async with self.pool.acquire() as conn:
            return await load_source_body(conn, digest)


class StaticUploader:
    """Put the static files into the tenant's bucket (keys = path inside the static folder;
    the edge serves them under /static/<key>). A key whose ETag already is the file's md5
    is not sent again; with `mirror`, keys not in `files` are deleted (the bucket mirrors
    the spec's static folder). Overwriting and deleting are both convergent."""

    def __init__(self, s3: Any) -> None:
        self.s3 = s3

    async def _etags(self, bucket: str) -> dict[str, str]:
        found: dict[str, str] = {}
        paginator = self.s3.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                found[item["Key"]] = item.get("ETag", "").strip('"')
        return found

    async def sync(self, bucket: str, files: dict[str, bytes], *, mirror: bool = False) -> StaticSync:
        try:
            present = await self._etags(bucket)
        except ClientError as exc:
            if files or exc.response.get("Error", {}).get("Code") != "NoSuchBucket":
                raise
            return StaticSync(uploaded=0, unchanged=0, deleted=0)  # nothing to send, nothing to clear
        sent = 0
        for key, body in sorted(files.items()):
            if present.get(key) == hashlib.md5(body, usedforsecurity=False).hexdigest():
                continue
            kind = mimetypes.guess_type(key)[0] or "application/octet-stream"
            await self.s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=kind)
            sent += 1
        extra = sorted(set(present) - set(files)) if mirror else []
        for start in range(0, len(extra), 1000):
            await self.s3.delete_objects(Bucket=bucket, Delete={
                "Objects": [{"Key": k} for k in extra[start:start + 1000]], "Quiet": True})
        return StaticSync(uploaded=sent, unchanged=len(files) - sent, deleted=len(extra))

    async def upload(self, bucket: str, files: dict[str, bytes]) -> int:
        """Add or overwrite only (a source deploy's static/ adds to what is there)."""
        return (await self.sync(bucket, files)).uploaded


@dataclass(frozen=True)
class StaticSync:
    uploaded: int
    unchanged: int
    deleted: int


@dataclass(frozen=True)
class Releases:
    """A tenant's releases as the builder uses them, off the event loop (the store is file
    I/O, on EFS in production): artifacts.store and artifacts.releases behind one object."""

    store: ArtifactStore

    async def listing(self, tenant: str) -> tuple[list[Manifest], Pointer | None]:
        """(every retained release, oldest first; the live pointer)."""
        return await asyncio.to_thread(lambda: (self.store.releases(tenant), self.store.read_current(tenant)))

    async def publish(self, tenant: str, version: int, artifact: bytes, *, entry: str | None = None,
                      copy_of: int | None = None) -> Manifest:
        """Release `version` (a rollback's copy of release `copy_of` is marked as one)."""
        def work() -> Manifest:
            manifest = self.store.publish_release(tenant, version, artifact, **({"entry": entry} if entry else {}))
            if copy_of is not None:
                mark_copy(self.store, tenant, manifest.version, copy_of)
            return manifest
        return await asyncio.to_thread(work)

    async def read(self, tenant: str, version: int) -> tuple[Manifest, bytes]:
        """A release's manifest and artifact bytes as stored (ArtifactError or OSError when
        it is gone); the caller checks them against each other."""
        def work() -> tuple[Manifest, bytes]:
            manifest = self.store.read_manifest(tenant, version)
            return manifest, (self.store.release_dir(tenant, version) / ARTIFACT).read_bytes()
        return await asyncio.to_thread(work)

    async def is_copy(self, tenant: str, version: int, target: int) -> bool:
        return await asyncio.to_thread(is_copy, self.store, tenant, version, target)

    async def prune(self, tenant: str, keep: int, published: int) -> list[int]:
        return await asyncio.to_thread(prune_releases, self.store, tenant, keep, published)

    def artifact_path(self, tenant: str, version: int) -> str:
        """Where the release's artifact lives, relative to the store's root (TenantChanged)."""
        return str((self.store.release_dir(tenant, version) / ARTIFACT).relative_to(self.store.root))


@dataclass
class BuilderDeps:
    prefix: str
    inputs: StoredInputs
    store: ArtifactStore
    static: StaticUploader
    _stack: contextlib.AsyncExitStack | None = None
    retention: int = 20  # releases kept per tenant (settings.release_retention)

    def names(self, tenant_id: str) -> TenantNames:
        return tenant_names(tenant_id, prefix=self.prefix)

    @property
    def releases(self) -> Releases:
        return Releases(self.store)

    async def aclose(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()


async def bootstrap(settings: Settings, pool: Any) -> BuilderDeps:
    """The builder's deps (STYLE.md: bootstrap); `pool`: reads the API's tables."""
    stack = contextlib.AsyncExitStack()
    s3 = await stack.enter_async_context(aws_client("s3", settings))
    return BuilderDeps(settings.name_prefix, StoredInputs(pool), ArtifactStore(store_root(settings)),
                       StaticUploader(s3), stack, retention=settings.release_retention)

