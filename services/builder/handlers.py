"""Builder: TenantProvisioned / AppUpdateRequested -> a release in the artifact store ->
TenantChanged (or BuildFailed).

The spec (or an edited source tree, `app deploy --source`) is read from what the API
stored content-addressed; the app is generated, compiled and packed reproducibly, so
the same input gives the same digest. If the newest release already has that digest,
nothing is published and TenantChanged names that release again ("no new release"):
this is also what makes a redelivery after a crash between publishing and emitting
harmless. Static files go to the tenant's bucket before the event: a spec's static
folder (`static_ref`) is mirrored (unchanged files are not sent again, keys no longer in
the folder are deleted), and a spec that names no static folder empties the bucket (its
app has no static files); a spec that names one but came without it (an API caller that
sent no `static_zip`) leaves the bucket as it is; a source tree's static/ only adds or
overwrites. An input the
generator cannot build is a PermanentFailure (events.failure: the consumer publishes
BuildFailed, retryable=False) and nothing is written, so the
live version keeps serving; I/O errors are raised for the consumer to retry.

A build is a command: the builder carries it out only as the API recorded it for that
tenant (events.recorded: the same request, spec, source, static folder, rollback target).
Anything else (a forged or altered event) changes nothing and is logged
`command.unrecorded`; no BuildFailed either, so the tenant's status stays as it was. A
recorded command that a newer request replaced (a replay, or a late delivery: the API has
accepted an update, rollback or deletion since) is no longer the tenant's intent and
changes nothing either (`command.superseded`).
"""

from __future__ import annotations

import hashlib

import structlog

from artifacts.errors import ArtifactError, SpecUnreadable
from artifacts.releases import spec_in
from contracts.app_spec import digest_of_ref
from spec.load import load_app_spec
from spec.problems import InvalidAppSpec
from contracts.envelope import Envelope, Event
from events.failure import PermanentFailure
from contracts.events_v1 import AppUpdateRequested, RollbackRequested, TenantChanged, \
    TenantProvisioned
from services.builder.adapters import BuilderDeps
from services.builder.codegen import generate, package
from spec.source import SPEC_FILE, SourceError, check_source, read_source_zip

log = structlog.get_logger(__name__)
SOURCE_REF_PREFIX = "source:sha256:"


async def _static(deps: BuilderDeps, static_ref: str | None) -> dict[str, bytes]:
    """The spec's static folder sent with the request (none: nothing to upload)."""
    if not static_ref:
        return {}
    body = await deps.inputs.source_body(static_ref.removeprefix(SOURCE_REF_PREFIX))
    if body is None:
        raise PermanentFailure("static", f"static files {static_ref} are not stored")
    try:
        return read_source_zip(body)[1]
    except SourceError as exc:
        raise PermanentFailure("static", str(exc)) from None


async def _inputs(deps: BuilderDeps, spec_ref: str, source_ref: str | None,
                  static_ref: str | None = None) -> tuple[dict[str, str], dict[str, bytes] | None, str]:
    """(source files, static files, spec digest) for this build. Static files None: leave
    the bucket alone; a dict from a spec (not a source tree): the bucket mirrors it."""
    if source_ref:
        body = await deps.inputs.source_body(source_ref.removeprefix(SOURCE_REF_PREFIX))
        if body is None:
            raise PermanentFailure("generate", f"source {source_ref} is not stored")
        try:
            files, static = read_source_zip(body)
            spec = check_source(files)
        except SourceError as exc:
            raise PermanentFailure("package", str(exc)) from None
        except InvalidAppSpec as exc:
            raise PermanentFailure("generate", f"spec.json: {exc}") from None
        return files, static, spec.digest()
    try:
        digest = digest_of_ref(spec_ref)
    except ValueError as exc:
        raise PermanentFailure("generate", str(exc)) from None
    body = await deps.inputs.spec_body(digest)
    if body is None:
        raise PermanentFailure("generate", f"spec {digest[:12]} is not stored")
    try:
        spec = load_app_spec(body)
    except InvalidAppSpec as exc:
        raise PermanentFailure("generate", str(exc)) from None
    if static_ref:
        static: dict[str, bytes] | None = await _static(deps, static_ref)
    else:
        static = {} if spec.static is None else None
    return generate(spec), static, spec.digest()


async def build(envelope: Envelope, deps: BuilderDeps, *, spec_ref: str, spec_sha256: str,
                source_ref: str | None = None, allow_destructive: bool = False,
                first_release: bool = False, static_ref: str | None = None) -> list[Event]:
    """One build. `first_release` (TenantProvisioned): a tenant that already has a newer,
    different release is not rebuilt from its original spec (a replay must not roll back)."""
    tenant = envelope.tenant_id
    try:
        files, static, digest_of_spec = await _inputs(deps, spec_ref, source_ref, static_ref)
        try:
            artifact = package(files)
        except SourceError as exc:
            raise PermanentFailure("package", str(exc)) from None
    except PermanentFailure as failed:  # BuildFailed names the spec it could not build
        raise PermanentFailure(failed.step, failed.error, spec_sha256=spec_sha256) from None
    sha256 = hashlib.sha256(artifact).hexdigest()
    releases, current = await deps.releases.listing(tenant)
    if first_release and releases and releases[-1].sha256 != sha256:
        log.info("build.skipped", reason="the tenant already has newer releases", version=releases[-1].version)
        return []
    if releases and releases[-1].sha256 == sha256:
        manifest = releases[-1]
        log.info("build.unchanged", version=manifest.version, sha256=sha256[:12])
    else:
        version = (releases[-1].version if releases else 0) + 1
        manifest = await deps.releases.publish(tenant, version, artifact)
        log.info("artifact.published", version=version, sha256=sha256[:12], bytes=len(artifact))
    await deps.releases.prune(tenant, deps.retention, manifest.version)
    mirror = not source_ref  # a spec's static folder (or none): the bucket mirrors it
    if static or (static is not None and mirror):
        done = await deps.static.sync(deps.names(tenant).bucket, static, mirror=mirror)
        if done.uploaded or done.deleted:
            log.info("static.synced", uploaded=done.uploaded, unchanged=done.unchanged, deleted=done.deleted)
    return [TenantChanged(
        version=manifest.version, artifact_path=deps.releases.artifact_path(tenant, manifest.version),
        sha256=manifest.sha256, size=manifest.size, spec_sha256=digest_of_spec,
        previous_version=current.version if current else None, allow_destructive=allow_destructive,
    )]


# The payload fields a build depends on, which must be the ones the API recorded.
BUILD_FIELDS = {"TenantProvisioned": ("spec_ref", "spec_sha256", "static_ref"),
                "AppUpdateRequested": ("spec_ref", "spec_sha256", "source_ref", "static_ref", "allow_destructive"),
                "RollbackRequested": ("to_version",)}


async def _unrecorded(envelope: Envelope, deps: BuilderDeps) -> bool:
    """True (and logged) when the API did not record exactly this command for the tenant."""
    reason = await deps.inputs.unrecorded(envelope, BUILD_FIELDS[envelope.event_type])
    if reason is not None:
        log.warning("command.unrecorded", producer=envelope.producer, reason=reason)
        return True
    if newer := await deps.inputs.superseded(envelope):
        log.warning("command.superseded", by=newer, reason="a newer request replaced this one")
        return True
    return False


async def on_tenant_provisioned(envelope: Envelope[TenantProvisioned], deps: BuilderDeps) -> list[Event]:
    data = envelope.data
    if await _unrecorded(envelope, deps):
        return []
    return await build(envelope, deps, spec_ref=data.spec_ref, spec_sha256=data.spec_sha256, first_release=True,
                       static_ref=data.static_ref)


async def on_app_update_requested(envelope: Envelope[AppUpdateRequested], deps: BuilderDeps) -> list[Event]:
    data = envelope.data
    if await _unrecorded(envelope, deps):
        return []
    return await build(envelope, deps, spec_ref=data.spec_ref, spec_sha256=data.spec_sha256,
                       source_ref=data.source_ref, allow_destructive=data.allow_destructive,
                       static_ref=data.static_ref)


async def on_rollback_requested(envelope: Envelope[RollbackRequested], deps: BuilderDeps) -> list[Event]:
    """A rollback is a new release whose artifact is a byte-identical copy of the target:
    no rebuild. A redelivery finds the copy already newest and names it again."""
    tenant, target = envelope.tenant_id, envelope.data.to_version
    if await _unrecorded(envelope, deps):
        return []
    try:
        source, artifact = await deps.releases.read(tenant, target)
    except (ArtifactError, OSError) as exc:
        raise _rollback_failed(f"release {target} is not retained: {exc}")
    if hashlib.sha256(artifact).hexdigest() != source.sha256 or len(artifact) != source.size:
        raise _rollback_failed(f"release {target} is corrupt: its artifact does not match its manifest")
    try:
        spec = spec_in(artifact, release=str(target))
    except SpecUnreadable as exc:
        raise _rollback_failed(str(exc))
    except InvalidAppSpec as exc:
        raise _rollback_failed(f"release {target} has no readable {SPEC_FILE}: {exc}")
    releases, current = await deps.releases.listing(tenant)
    newest = releases[-1]
    if newest.version > target and newest.sha256 == source.sha256 and \
            await deps.releases.is_copy(tenant, newest.version, target):
        manifest = newest
        log.info("rollback.unchanged", version=manifest.version, rollback_of=target)
    else:
        manifest = await deps.releases.publish(tenant, newest.version + 1, artifact, entry=source.entry,
                                               copy_of=target)
        log.info("artifact.published", version=manifest.version, sha256=manifest.sha256[:12],
                 bytes=manifest.size, rollback_of=target)
    await deps.releases.prune(tenant, deps.retention, manifest.version)
    return [TenantChanged(
        version=manifest.version, artifact_path=deps.releases.artifact_path(tenant, manifest.version),
        sha256=manifest.sha256, size=manifest.size, spec_sha256=spec.digest(),
        previous_version=current.version if current else None, rollback_of=target,
    )]


def _rollback_failed(error: str) -> PermanentFailure:
    return PermanentFailure("rollback", error, spec_sha256="0" * 64)


HANDLERS = {TenantProvisioned: on_tenant_provisioned, AppUpdateRequested: on_app_update_requested,
            RollbackRequested: on_rollback_requested}
