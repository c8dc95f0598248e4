"""artifacts.releases and artifacts.tenant: the one reader of a release's spec (with the
exact messages the builder's rollback and the migrator report), rollback copy markers,
the live source export and a tenant's folder as a resource."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from artifacts.errors import ArtifactError, SpecUnreadable
from artifacts.releases import NoLiveRelease, export_live_source, is_copy, mark_copy, release_spec, spec_in
from artifacts.store import ARTIFACT, ArtifactStore
from artifacts.tenant import TenantArtifacts
from contracts.envelope import Envelope
from contracts.events_v1 import RollbackRequested
from contracts.failures_v1 import BuildFailed
from contracts.tenant import tenant_names
from services.builder.adapters import BuilderDeps
from services.builder.codegen import generate, package
from events.failure import handled
from services.builder.handlers import on_rollback_requested
from spec.load import load_app_spec
from spec.problems import InvalidAppSpec

SPEC = load_app_spec(open("examples/tasks.yaml").read())
NO_ITEM = "\"There is no item named 'spec.json' in the archive\""


def zipped(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, body in files.items():
            zf.writestr(zipfile.ZipInfo(name), body)  # 1980: the same bytes at every call
    return buf.getvalue()


def test_the_spec_is_read_from_bytes_or_a_file(tmp_path: Path):
    data = zipped({"spec.json": SPEC.canonical_json()})
    (tmp_path / "app.pyz").write_bytes(data)
    assert spec_in(data, release="1").digest() == SPEC.digest()
    assert spec_in(tmp_path / "app.pyz", release="1").digest() == SPEC.digest()


@pytest.mark.parametrize(("data", "cause"), [(zipped({"__main__.py": ""}), NO_ITEM),
                                             (b"not a zip", "File is not a zip file")])
def test_a_release_without_a_readable_spec_names_the_release(data: bytes, cause: str):
    with pytest.raises(SpecUnreadable) as caught:
        spec_in(data, release="3 of shop")
    assert str(caught.value) == f"release 3 of shop has no readable spec.json: {cause}"
    assert caught.value.reason == "spec_missing" and isinstance(caught.value, ArtifactError)


def test_an_invalid_spec_inside_a_release_is_invalid_app_spec():
    with pytest.raises(InvalidAppSpec):
        spec_in(zipped({"spec.json": "{}"}), release="1")


def test_the_migrator_reads_the_spec_of_a_verified_copy(tmp_path: Path):
    store = ArtifactStore(tmp_path)
    good = store.publish_release("shop", 1, zipped({"spec.json": SPEC.canonical_json()}))
    bare = store.publish_release("shop", 2, zipped({"__main__.py": ""}))
    assert release_spec(store, "shop", 1, good.sha256).digest() == SPEC.digest()
    with pytest.raises(SpecUnreadable, match=f"^release 2 of shop has no readable spec.json: {NO_ITEM}$"):
        release_spec(store, "shop", 2, bare.sha256)


class Recorded:
    async def unrecorded(self, envelope, fields):
        return None

    async def superseded(self, envelope):
        return None


@pytest.mark.parametrize(("files", "error"), [
    ({"__main__.py": ""}, f"release 1 has no readable spec.json: {NO_ITEM}"),
    ({"spec.json": "{}"}, "release 1 has no readable spec.json: "),
])
async def test_a_rollback_to_a_release_without_a_valid_spec_fails_with_the_same_message(tmp_path, files, error):
    deps = BuilderDeps("hp", inputs=Recorded(), store=ArtifactStore(tmp_path), static=None, retention=3)
    deps.store.publish_release("shop", 1, zipped(files))
    envelope = Envelope.new(RollbackRequested(to_version=1, requested_by="alice"), tenant_id="shop", producer="api")
    [failed] = await handled("builder", on_rollback_requested, envelope, deps)  # as its consumer runs it
    assert isinstance(failed, BuildFailed) and failed.stage == "rollback" and failed.error.startswith(error)
    assert [m.version for m in deps.store.releases("shop")] == [1]


def test_a_copy_marker_names_the_release_it_copies(tmp_path: Path):
    store = ArtifactStore(tmp_path)
    store.publish_release("shop", 2, b"bytes")
    assert not is_copy(store, "shop", 2, 1)
    mark_copy(store, "shop", 2, 1)
    assert (store.release_dir("shop", 2) / "rollback_of").read_text() == "1"
    assert is_copy(store, "shop", 2, 1) and not is_copy(store, "shop", 2, 3)


def test_the_live_source_comes_from_the_verified_live_release(tmp_path: Path):
    store = ArtifactStore(tmp_path)
    with pytest.raises(NoLiveRelease, match="shop has no live release yet"):
        export_live_source(tmp_path, "shop")
    store.publish_release("shop", 1, package(generate(SPEC)))
    store.set_current("shop", 1)
    version, body = export_live_source(tmp_path, "shop")
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        assert version == 1 and "spec.json" in zf.namelist()
    (store.release_dir("shop", 1) / ARTIFACT).write_bytes(b"tampered")
    with pytest.raises(ArtifactError, match="^shop release 1 does not match its digest$"):
        export_live_source(tmp_path, "shop")


async def test_a_tenants_folder_is_a_resource_removed_at_teardown(tmp_path: Path):
    names = tenant_names("shop")
    folders = TenantArtifacts(tmp_path / "artifacts")
    assert folders.folders() == [] and await folders.remove(names) == []
    (folders.folder(names) / "releases").mkdir(parents=True)
    (folders.root / ".tmp-hidden").mkdir()
    assert folders.folders() == [names.artifact_dir]
    assert await folders.existing(names) == [f"artifacts:{names.artifact_dir}"]
    assert await folders.remove(names) == [f"artifacts:{names.artifact_dir}"]
    assert not folders.folder(names).exists() and await folders.existing(names) == []
