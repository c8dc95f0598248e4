"""The builder's handlers on a real platform (control PostgreSQL, artifact store, S3 on
the emulator): releases with manifests, same input -> same digest and no new release,
bad specs and uncompilable source -> BuildFailed with nothing published."""

from __future__ import annotations

import hashlib
import json
from functools import partial

import pytest

from events.failure import handled
from contracts.app_spec import spec_ref
from spec.load import load_app_spec
from contracts.events_v1 import TenantChanged
from contracts.failures_v1 import BuildFailed
from artifacts.inputs import store_source
from services.builder.adapters import BuilderDeps
from services.builder.codegen import generate
from spec.source import source_zip
from services.builder.handlers import on_app_update_requested, on_tenant_provisioned
from services.provisioner.handlers import on_tenant_requested
from tests.support.builder_inputs import provisioned, stored, update
from tests.support.events import requested
from tests.support.spec_versions import TASKS_YAML

# The handlers as their consumers run them: a PermanentFailure becomes the service's failure event.
build_update = partial(handled, "builder", on_app_update_requested)
build_provisioned = partial(handled, "builder", on_tenant_provisioned)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120),
              pytest.mark.parametrize("running_platform", ["moto"], indirect=True)]

async def test_first_release_then_same_spec_again_is_no_new_release(builder_deps, tenant):
    ref, digest = await stored(builder_deps, TASKS_YAML)
    [first] = await build_provisioned(provisioned(tenant, ref, digest), builder_deps)
    assert isinstance(first, TenantChanged) and first.version == 1 and first.previous_version is None
    assert first.artifact_path == f"{tenant}/releases/1/app.pyz" and first.spec_sha256 == digest
    folder = builder_deps.store.release_dir(tenant, 1)
    artifact = (folder / "app.pyz").read_bytes()
    assert hashlib.sha256(artifact).hexdigest() == first.sha256 and len(artifact) == first.size
    assert json.loads((folder / "manifest.json").read_text())["sha256"] == first.sha256
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".tmp")]

    [again] = await build_provisioned(provisioned(tenant, ref, digest), builder_deps)  # redelivery
    [same] = await build_update(update(tenant, ref, digest), builder_deps)
    assert again == first and (same.version, same.sha256) == (1, first.sha256)
    assert [m.version for m in builder_deps.store.releases(tenant)] == [1]


async def test_a_changed_spec_is_the_next_version_and_a_provisioned_replay_does_not_roll_back(builder_deps, tenant):
    ref, digest = await stored(builder_deps, TASKS_YAML)
    [first] = await build_provisioned(provisioned(tenant, ref, digest), builder_deps)
    builder_deps.store.set_current(tenant, 1)
    ref2, digest2 = await stored(builder_deps, TASKS_YAML.replace("My tasks", "Our tasks"))
    [second] = await build_update(update(tenant, ref2, digest2, allow_destructive=True), builder_deps)
    assert (second.version, second.previous_version, second.allow_destructive) == (2, 1, True)
    assert second.sha256 != first.sha256 and second.spec_sha256 == digest2
    assert await build_provisioned(provisioned(tenant, ref, digest), builder_deps) == []
    assert [m.version for m in builder_deps.store.releases(tenant)] == [1, 2]


@pytest.mark.parametrize("body, message", [
    ('{"app": "X", "entities": {"task": {"fields": {"o": {"type": "reference", "to": "nope"}}}}}', "unknown entity"),
    ("{not json", "invalid JSON"),
])
async def test_a_spec_the_generator_cannot_build_is_build_failed(builder_deps, tenant, body, message):
    ref, digest = await stored(builder_deps, body, validate=False)
    [failed] = await build_update(update(tenant, ref, digest), builder_deps)
    assert isinstance(failed, BuildFailed) and failed.stage == "generate" and not failed.retryable
    assert message in failed.error and failed.spec_sha256 == digest
    assert builder_deps.store.releases(tenant) == []
    [missing] = await build_update(update(tenant, spec_ref("0" * 64), "0" * 64), builder_deps)
    assert isinstance(missing, BuildFailed) and "not stored" in missing.error


async def source_update(deps: BuilderDeps, tenant: str, files: dict, static: dict | None = None) -> list:
    body = source_zip(files, static)
    digest = hashlib.sha256(body).hexdigest()
    async with deps.inputs.pool.acquire() as conn:
        await store_source(conn, digest, body)
    spec_digest = hashlib.sha256(files["spec.json"].encode()).hexdigest()  # what the API stored
    return await build_update(update(tenant, spec_ref(spec_digest), spec_digest,
                                                source_ref=f"source:sha256:{digest}"), deps)


async def test_edited_source_is_released_with_its_static_files(builder_deps, res, tenant):
    await on_tenant_requested(requested(tenant), res)  # the bucket
    files = generate(load_app_spec(TASKS_YAML))
    files["app.py"] = files["app.py"].replace("TITLE = 'Tasks'", "TITLE = 'Edited by hand'")
    [changed] = await source_update(builder_deps, tenant, files, {"css/site.css": b"body{color:red}"})
    assert isinstance(changed, TenantChanged) and changed.version == 1
    assert changed.spec_sha256 == load_app_spec(TASKS_YAML).digest()
    s3 = builder_deps.static.s3
    obj = await s3.get_object(Bucket=res.names(tenant).bucket, Key="css/site.css")
    assert await obj["Body"].read() == b"body{color:red}" and obj["ContentType"] == "text/css"

    broken = dict(files, **{"app.py": files["app.py"] + "\nif True\n"})
    [failed] = await source_update(builder_deps, tenant, broken)
    assert isinstance(failed, BuildFailed) and failed.stage == "package"
    assert f"app.py:{broken['app.py'].count(chr(10))}" in failed.error
    bad_spec = dict(files, **{"spec.json": "{}"})
    [refused] = await source_update(builder_deps, tenant, bad_spec)
    assert isinstance(refused, BuildFailed) and "spec.json" in refused.error
    assert [m.version for m in builder_deps.store.releases(tenant)] == [1]
