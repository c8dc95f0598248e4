"""Builder: TenantProvisioned / AppUpdateRequested -> a release in the artifact store ->
TenantChanged (or BuildFailed).

The spec (or an edited source tree, `app deploy --source`) is read from what the API
stored content-addressed; the app is generated, compiled and packed reproducibly, so
the same input gives the same digest. If the newest release already has that digest,
nothing is published and TenantChanged names that release again ("no new release"):
this is also what makes a redelivery after a crash between publishing and emitting
harmless. Static files go to the tenant's bucket before the event. An input the
generator cannot build is BuildFailed (retryable=False) and nothing is written, so the
live version keeps serving; I/O errors are raised for the consumer to retry.
"""

from __future__ import annotations

import asyncio
import hashlib

import structlog

from contracts.app_spec import InvalidAppSpec, digest_of_ref, load_app_spec
from contracts.envelope import Envelope, Event
from contracts.events_v1 import AppUpdateRequested, BuildFailed, TenantChanged, TenantProvisioned
from reloader.artifacts import ARTIFACT
from services.builder.adapters import BuilderDeps
from services.builder.codegen import SourceError, check_source, generate, package, read_source_zip

log = structlog.get_logger(__name__)
SOURCE_REF_PREFIX = "source:sha256:"


class BuildError(Exception):
    def __init__(self, stage: str, error: str) -> None:
        super().__init__(f"{stage}: {error}")
        self.stage, self.error = stage, error


async def _inputs(deps: BuilderDeps, spec_ref: str, source_ref: str | None) -> tuple[dict[str, str], dict[str, bytes], str]:
    """(source files, static files, spec digest) for this build."""
    if source_ref:
        body = await deps.inputs.source_body(source_ref.removeprefix(SOURCE_REF_PREFIX))
        if body is None:
            raise BuildError("generate", f"source {source_ref} is not stored")
        try:
            files, static = read_source_zip(body)
            spec = check_source(files)
        except SourceError as exc:
            raise BuildError("package", str(exc)) from None
        except InvalidAppSpec as exc:
            raise BuildError("generate", f"spec.json: {exc}") from None
        return files, static, spec.digest()
    try:
        digest = digest_of_ref(spec_ref)
    except ValueError as exc:
        raise BuildError("generate", str(exc)) from None
    body = await deps.inputs.spec_body(digest)
    if body is None:
        raise BuildError("generate", f"spec {digest[:12]} is not stored")
    try:
        spec = load_app_spec(body)
    except InvalidAppSpec as exc:
        raise BuildError("generate", str(exc)) from None
    return generate(spec), {}, spec.digest()


async def build(envelope: Envelope, deps: BuilderDeps, *, spec_ref: str, spec_sha256: str,
                source_ref: str | None = None, allow_destructive: bool = False,
                first_release: bool = False) -> list[Event]:
    """One build. `first_release` (TenantProvisioned): a tenant that already has a newer,
    different release is not rebuilt from its original spec (a replay must not roll back)."""
    tenant = envelope.tenant_id
    store = deps.store
    try:
        files, static, digest_of_spec = await _inputs(deps, spec_ref, source_ref)
        try:
            artifact = package(files)
        except SourceError as exc:
            raise BuildError("package", str(exc)) from None
    except BuildError as failed:
        log.warning("build.failed", stage=failed.stage, error=failed.error)
        return [BuildFailed(stage=failed.stage, error=failed.error, retryable=False, spec_sha256=spec_sha256)]
    sha256 = hashlib.sha256(artifact).hexdigest()
    releases = await asyncio.to_thread(store.releases, tenant)
    current = await asyncio.to_thread(store.read_current, tenant)
    if first_release and releases and releases[-1].sha256 != sha256:
        log.info("build.skipped", reason="the tenant already has newer releases", version=releases[-1].version)
        return []
    if releases and releases[-1].sha256 == sha256:
        manifest = releases[-1]
        log.info("build.unchanged", version=manifest.version, sha256=sha256[:12])
    else:
        version = (releases[-1].version if releases else 0) + 1
        manifest = await asyncio.to_thread(store.publish_release, tenant, version, artifact)
        log.info("artifact.published", version=version, sha256=sha256[:12], bytes=len(artifact))
    if static:
        count = await deps.static.upload(deps.names(tenant).bucket, static)
        log.info("static.uploaded", files=count)
    return [TenantChanged(
        version=manifest.version, artifact_path=f"{store.tenant_dir(tenant).name}/releases/{manifest.version}/{ARTIFACT}",
        sha256=manifest.sha256, size=manifest.size, spec_sha256=digest_of_spec,
        previous_version=current.version if current else None, allow_destructive=allow_destructive,
    )]


async def on_tenant_provisioned(envelope: Envelope[TenantProvisioned], deps: BuilderDeps) -> list[Event]:
    data = envelope.data
    return await build(envelope, deps, spec_ref=data.spec_ref, spec_sha256=data.spec_sha256, first_release=True)


async def on_app_update_requested(envelope: Envelope[AppUpdateRequested], deps: BuilderDeps) -> list[Event]:
    data = envelope.data
    return await build(envelope, deps, spec_ref=data.spec_ref, spec_sha256=data.spec_sha256,
                       source_ref=data.source_ref, allow_destructive=data.allow_destructive)


HANDLERS = {TenantProvisioned: on_tenant_provisioned, AppUpdateRequested: on_app_update_requested}
