"""A spec's static folder (static_ref on TenantProvisioned / AppUpdateRequested) on the real
emulator bucket: uploaded before TenantChanged, mirrored (keys gone from the folder are
deleted), the same bundle again sends nothing, a missing bundle is BuildFailed."""

from __future__ import annotations

import hashlib
from functools import partial

import pytest

from events.failure import handled
from contracts.envelope import Envelope
from contracts.events_v1 import TenantChanged
from contracts.failures_v1 import BuildFailed
from artifacts.inputs import store_source
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


async def bundle(deps, files: dict[str, bytes]) -> str:
    body = source_zip({}, files)
    digest = hashlib.sha256(body).hexdigest()
    async with deps.inputs.pool.acquire() as conn:
        await store_source(conn, digest, body)
    return f"source:sha256:{digest}"


async def bucket(deps, name: str) -> dict[str, tuple[bytes, str]]:
    s3, found = deps.static.s3, {}
    listed = await s3.list_objects_v2(Bucket=name)
    for item in listed.get("Contents", []):
        obj = await s3.get_object(Bucket=name, Key=item["Key"])
        found[item["Key"]] = (await obj["Body"].read(), obj["ContentType"])
    return found


async def test_static_folder_is_uploaded_on_create_and_mirrored_on_update(builder_deps, res, tenant):
    await on_tenant_requested(requested(tenant), res)  # the bucket
    name = res.names(tenant).bucket
    ref, digest = await stored(builder_deps, TASKS_YAML)
    first = await bundle(builder_deps, {"style.css": b"body{color:red}", "img/logo.svg": b"<svg/>"})
    plain = provisioned(tenant, ref, digest)
    event = Envelope.new(plain.data.model_copy(update={"static_ref": first}), tenant_id=tenant, producer="provisioner")
    [changed] = await build_provisioned(event, builder_deps)
    assert isinstance(changed, TenantChanged) and changed.version == 1
    assert await bucket(builder_deps, name) == {"style.css": (b"body{color:red}", "text/css"),
                                                "img/logo.svg": (b"<svg/>", "image/svg+xml")}

    sent: list[str] = []
    put = builder_deps.static.s3.put_object

    async def counting(**kwargs):
        sent.append(kwargs["Key"])
        return await put(**kwargs)

    builder_deps.static.s3.put_object = counting
    try:
        [same] = await build_update(update(tenant, ref, digest, static_ref=first), builder_deps)
        assert isinstance(same, TenantChanged) and same.version == 1 and sent == []  # nothing sent again
        second = await bundle(builder_deps, {"style.css": b"body{color:blue}", "app.js": b"1"})
        [again] = await build_update(update(tenant, ref, digest, static_ref=second), builder_deps)
    finally:
        builder_deps.static.s3.put_object = put
    assert isinstance(again, TenantChanged) and sorted(sent) == ["app.js", "style.css"]
    assert await bucket(builder_deps, name) == {"style.css": (b"body{color:blue}", "text/css"),
                                                "app.js": (b"1", "text/javascript")}  # img/logo.svg gone


async def test_a_static_bundle_that_is_not_stored_is_build_failed(builder_deps, res, tenant):
    await on_tenant_requested(requested(tenant), res)
    ref, digest = await stored(builder_deps, TASKS_YAML)
    missing = "source:sha256:" + "0" * 64
    [failed] = await build_update(update(tenant, ref, digest, static_ref=missing), builder_deps)
    assert isinstance(failed, BuildFailed) and failed.stage == "static" and "not stored" in failed.error
    assert builder_deps.store.releases(tenant) == [] and await bucket(builder_deps, res.names(tenant).bucket) == {}


async def test_a_spec_without_a_static_folder_empties_the_bucket(builder_deps, res, tenant):
    """The spec dropped `static:`: its app has no static files, so the bucket is emptied; a
    spec that names a folder but came without it (no static_ref) leaves the bucket alone."""
    await on_tenant_requested(requested(tenant), res)
    name = res.names(tenant).bucket
    ref, digest = await stored(builder_deps, TASKS_YAML)
    files = await bundle(builder_deps, {"style.css": b"body{}", "app.js": b"1"})
    [first] = await build_update(update(tenant, ref, digest, static_ref=files), builder_deps)
    assert isinstance(first, TenantChanged) and set(await bucket(builder_deps, name)) == {"style.css", "app.js"}
    [kept] = await build_update(update(tenant, ref, digest), builder_deps)  # names static/, none sent
    assert isinstance(kept, TenantChanged) and set(await bucket(builder_deps, name)) == {"style.css", "app.js"}
    bare = TASKS_YAML.replace("static: static/\n", "")
    assert bare != TASKS_YAML
    ref2, digest2 = await stored(builder_deps, bare)
    [changed] = await build_update(update(tenant, ref2, digest2), builder_deps)
    assert isinstance(changed, TenantChanged) and changed.version == 2
    assert await bucket(builder_deps, name) == {}
