"""The builder's handlers on a real platform (control PostgreSQL, artifact store, S3 on
the emulator): releases with manifests, same input -> same digest and no new release,
bad specs and uncompilable source -> BuildFailed with nothing published."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator

import asyncpg
import pytest

from contracts.app_spec import spec_ref
from spec.load import load_app_spec
from contracts.envelope import Envelope
from contracts.events_v1 import AppUpdateRequested, BuildFailed, TenantChanged, TenantProvisioned
from services.api.store import ensure_schema, store_source, store_spec
from services.builder.adapters import BuilderDeps, open_deps
from services.builder.codegen import generate
from spec.source import source_zip
from services.builder.handlers import on_app_update_requested, on_tenant_provisioned
from services.provisioner.handlers import on_tenant_requested
from tests.integration.test_provision_resources import res, tenant  # noqa: F401
from tests.support.events import requested

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120),
              pytest.mark.parametrize("running_platform", ["moto"], indirect=True)]

SPEC = open("examples/tasks.yaml").read()


@pytest.fixture
async def deps(running_platform) -> AsyncIterator[BuilderDeps]:
    pool = await asyncpg.create_pool(running_platform.conn.control_dsn, min_size=1, max_size=3)
    await ensure_schema(pool)
    d = await open_deps(running_platform.settings, pool)
    try:
        yield d
    finally:
        await d.aclose()
        await pool.close()


async def stored(deps: BuilderDeps, text: str, *, validate: bool = True) -> tuple[str, str]:
    """Store a spec like the API does; returns (spec_ref, sha256)."""
    body = load_app_spec(text).canonical_json() if validate else text
    digest = hashlib.sha256(body.encode()).hexdigest()
    async with deps.inputs.pool.acquire() as conn:
        await store_spec(conn, digest, body)
    return spec_ref(digest), digest


def provisioned(tenant: str, ref: str, digest: str) -> Envelope:
    names = f"hp-{tenant}"[:40]
    return Envelope.new(TenantProvisioned(
        database=names.replace("-", "_"), db_role=names.replace("-", "_"), cache_user=names, cache_prefix=f"{tenant}:",
        bucket=f"{names}-static", secret_name=f"hostplane/{tenant}", runtime_service=names, spec_ref=ref,
        spec_sha256=digest), tenant_id=tenant, producer="provisioner")


def update(tenant: str, ref: str, digest: str, **extra) -> Envelope:
    return Envelope.new(AppUpdateRequested(spec_ref=ref, spec_sha256=digest, **extra), tenant_id=tenant,
                        producer="api")


async def test_first_release_then_same_spec_again_is_no_new_release(deps, tenant):  # noqa: F811
    ref, digest = await stored(deps, SPEC)
    [first] = await on_tenant_provisioned(provisioned(tenant, ref, digest), deps)
    assert isinstance(first, TenantChanged) and first.version == 1 and first.previous_version is None
    assert first.artifact_path == f"{tenant}/releases/1/app.pyz" and first.spec_sha256 == digest
    folder = deps.store.release_dir(tenant, 1)
    artifact = (folder / "app.pyz").read_bytes()
    assert hashlib.sha256(artifact).hexdigest() == first.sha256 and len(artifact) == first.size
    assert json.loads((folder / "manifest.json").read_text())["sha256"] == first.sha256
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".tmp")]

    [again] = await on_tenant_provisioned(provisioned(tenant, ref, digest), deps)  # redelivery
    [same] = await on_app_update_requested(update(tenant, ref, digest), deps)
    assert again == first and (same.version, same.sha256) == (1, first.sha256)
    assert [m.version for m in deps.store.releases(tenant)] == [1]


async def test_a_changed_spec_is_the_next_version_and_a_provisioned_replay_does_not_roll_back(deps, tenant):  # noqa: F811
    ref, digest = await stored(deps, SPEC)
    [first] = await on_tenant_provisioned(provisioned(tenant, ref, digest), deps)
    deps.store.set_current(tenant, 1)
    ref2, digest2 = await stored(deps, SPEC.replace("My tasks", "Our tasks"))
    [second] = await on_app_update_requested(update(tenant, ref2, digest2, allow_destructive=True), deps)
    assert (second.version, second.previous_version, second.allow_destructive) == (2, 1, True)
    assert second.sha256 != first.sha256 and second.spec_sha256 == digest2
    assert await on_tenant_provisioned(provisioned(tenant, ref, digest), deps) == []
    assert [m.version for m in deps.store.releases(tenant)] == [1, 2]


@pytest.mark.parametrize("body, message", [
    ('{"app": "X", "entities": {"task": {"fields": {"o": {"type": "reference", "to": "nope"}}}}}', "unknown entity"),
    ("{not json", "invalid JSON"),
])
async def test_a_spec_the_generator_cannot_build_is_build_failed(deps, tenant, body, message):  # noqa: F811
    ref, digest = await stored(deps, body, validate=False)
    [failed] = await on_app_update_requested(update(tenant, ref, digest), deps)
    assert isinstance(failed, BuildFailed) and failed.stage == "generate" and not failed.retryable
    assert message in failed.error and failed.spec_sha256 == digest
    assert deps.store.releases(tenant) == []
    [missing] = await on_app_update_requested(update(tenant, spec_ref("0" * 64), "0" * 64), deps)
    assert isinstance(missing, BuildFailed) and "not stored" in missing.error


async def source_update(deps: BuilderDeps, tenant: str, files: dict, static: dict | None = None) -> list:
    body = source_zip(files, static)
    digest = hashlib.sha256(body).hexdigest()
    async with deps.inputs.pool.acquire() as conn:
        await store_source(conn, digest, body)
    spec_digest = hashlib.sha256(files["spec.json"].encode()).hexdigest()  # what the API stored
    return await on_app_update_requested(update(tenant, spec_ref(spec_digest), spec_digest,
                                                source_ref=f"source:sha256:{digest}"), deps)


async def test_edited_source_is_released_with_its_static_files(deps, res, tenant):  # noqa: F811
    await on_tenant_requested(requested(tenant), res)  # the bucket
    files = generate(load_app_spec(SPEC))
    files["app.py"] = files["app.py"].replace("TITLE = 'Tasks'", "TITLE = 'Edited by hand'")
    [changed] = await source_update(deps, tenant, files, {"css/site.css": b"body{color:red}"})
    assert isinstance(changed, TenantChanged) and changed.version == 1
    assert changed.spec_sha256 == load_app_spec(SPEC).digest()
    s3 = deps.static.s3
    obj = await s3.get_object(Bucket=res.names(tenant).bucket, Key="css/site.css")
    assert await obj["Body"].read() == b"body{color:red}" and obj["ContentType"] == "text/css"

    broken = dict(files, **{"app.py": files["app.py"] + "\nif True\n"})
    [failed] = await source_update(deps, tenant, broken)
    assert isinstance(failed, BuildFailed) and failed.stage == "package"
    assert f"app.py:{broken['app.py'].count(chr(10))}" in failed.error
    bad_spec = dict(files, **{"spec.json": "{}"})
    [refused] = await source_update(deps, tenant, bad_spec)
    assert isinstance(refused, BuildFailed) and "spec.json" in refused.error
    assert [m.version for m in deps.store.releases(tenant)] == [1]
