"""The artifact store: immutable releases, an atomically replaced pointer whose generation
only grows, and readers that refuse anything missing, partial or corrupt."""

from __future__ import annotations

import hashlib
import json

import pytest

from artifacts.errors import (
    CorruptManifest,
    CorruptPointer,
    DigestMismatch,
    PartialRelease,
    ReleaseExists,
    ReleaseNotFound,
    TruncatedArtifact,
)
from artifacts.store import ArtifactStore
from contracts import InvalidTenantId

PYZ = b"PK-not-really-a-zip-but-bytes" * 100


@pytest.fixture
def store(tmp_path):
    return ArtifactStore(tmp_path / "artifacts")


def test_publish_writes_the_documented_layout(store, tmp_path):
    manifest = store.publish_release("acme", 1, PYZ, built_at="2026-01-01T00:00:00+00:00")
    folder = tmp_path / "artifacts" / "acme" / "releases" / "1"
    assert (folder / "app.pyz").read_bytes() == PYZ
    on_disk = json.loads((folder / "manifest.json").read_text())
    assert on_disk == {"version": 1, "sha256": hashlib.sha256(PYZ).hexdigest(), "size": len(PYZ),
                       "built_at": "2026-01-01T00:00:00+00:00", "entry": "app:app"}
    assert manifest.sha256 == on_disk["sha256"]
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".tmp")]


def test_releases_are_immutable_and_republishing_the_same_bytes_is_harmless(store):
    first = store.publish_release("acme", 1, PYZ)
    assert store.publish_release("acme", 1, PYZ) == first
    with pytest.raises(ReleaseExists):
        store.publish_release("acme", 1, PYZ + b"changed")
    assert store.fetch("acme", 1, first.sha256, store.root / "cache").path.read_bytes() == PYZ


def test_pointer_generation_grows_on_every_change_including_rollbacks(store, tmp_path):
    assert store.read_current("acme") is None
    m1 = store.publish_release("acme", 1, PYZ)
    m2 = store.publish_release("acme", 2, PYZ + b"2")
    gens = [store.set_current("acme", v, correlation_id="c").generation for v in (1, 2, 1)]
    assert gens == [1, 2, 3]
    current = store.read_current("acme")
    assert (current.version, current.sha256, current.generation) == (1, m1.sha256, 3)
    assert m2.sha256 != m1.sha256
    leftovers = [p.name for p in (tmp_path / "artifacts" / "acme").iterdir() if p.name.startswith(".current.json")]
    assert leftovers == []


def test_pointer_to_a_release_that_does_not_exist_is_refused(store):
    with pytest.raises(ReleaseNotFound):
        store.set_current("acme", 9)


def test_fetch_copies_to_local_disk_and_verifies(store, tmp_path):
    m = store.publish_release("acme", 3, PYZ)
    local = store.fetch("acme", 3, m.sha256, tmp_path / "local")
    assert local.path.parent == tmp_path / "local" and local.path.read_bytes() == PYZ
    assert (local.version, local.sha256, local.entry) == (3, m.sha256, "app:app")


def test_a_damaged_cached_copy_is_fetched_again_not_run(store, tmp_path):
    m = store.publish_release("acme", 3, PYZ)
    first = store.fetch("acme", 3, m.sha256, tmp_path / "local")
    first.path.write_bytes(PYZ[:-1] + b"X")  # same size, other bytes (the cache is on the tenant's disk)
    again = store.fetch("acme", 3, m.sha256, tmp_path / "local")
    assert again.path == first.path and again.path.read_bytes() == PYZ
    first.path.write_bytes(b"short")
    assert store.fetch("acme", 3, m.sha256, tmp_path / "local").path.read_bytes() == PYZ


def test_pointer_digest_must_match_the_manifest(store, tmp_path):
    store.publish_release("acme", 1, PYZ)
    with pytest.raises(DigestMismatch):
        store.fetch("acme", 1, "0" * 64, tmp_path / "local")


def test_artifact_with_a_wrong_sha256_is_refused(store, tmp_path):
    m = store.publish_release("acme", 1, PYZ)
    pyz = store.release_dir("acme", 1) / "app.pyz"
    pyz.write_bytes(PYZ[:-1] + b"X")  # same size, other bytes
    with pytest.raises(DigestMismatch):
        store.fetch("acme", 1, m.sha256, tmp_path / "local")
    assert not list((tmp_path / "local").iterdir())  # nothing half-verified is left to run


def test_truncated_artifact_is_refused(store, tmp_path):
    m = store.publish_release("acme", 1, PYZ)
    pyz = store.release_dir("acme", 1) / "app.pyz"
    pyz.write_bytes(PYZ[: len(PYZ) // 2])
    with pytest.raises(TruncatedArtifact):
        store.fetch("acme", 1, m.sha256, tmp_path / "local")


def test_partial_and_corrupt_releases_have_their_own_errors(store, tmp_path):
    m = store.publish_release("acme", 1, PYZ)
    (store.release_dir("acme", 1) / "app.pyz").unlink()
    with pytest.raises(PartialRelease):
        store.fetch("acme", 1, m.sha256, tmp_path / "local")
    store.release_dir("acme", 2).mkdir(parents=True)
    with pytest.raises(PartialRelease):
        store.read_manifest("acme", 2)
    store.release_dir("acme", 3).mkdir(parents=True)
    (store.release_dir("acme", 3) / "manifest.json").write_text("{not json")
    with pytest.raises(CorruptManifest):
        store.read_manifest("acme", 3)
    store.pointer_path("acme").write_text('{"generation": "x"}')
    with pytest.raises(CorruptPointer):
        store.read_current("acme")
    assert [r.version for r in store.releases("acme")] == [1]  # only complete ones are listed


def test_a_corrupt_pointer_can_be_repaired_by_the_next_writer(store):
    store.publish_release("acme", 1, PYZ)
    store.pointer_path("acme").write_text("garbage")
    assert store.set_current("acme", 1).generation == 1


def test_tenant_folders_come_from_the_one_naming_function(store):
    with pytest.raises(InvalidTenantId):
        store.tenant_dir("../etc")
    assert store.tenant_dir("acme").name == "acme"


def test_errors_carry_release_failed_reason_codes():
    import re

    codes = {cls.reason for cls in (ReleaseNotFound, PartialRelease, CorruptManifest, CorruptPointer,
                                    DigestMismatch, TruncatedArtifact, ReleaseExists)}
    assert len(codes) == 7 and all(re.match(r"^[a-z][a-z0-9_.-]{0,62}$", c) for c in codes)
