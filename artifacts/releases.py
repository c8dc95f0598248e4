"""What the platform does with a tenant's releases beyond storing them: prune the old ones,
mark a rollback's copy, read the spec packed inside a release, export the live release's
source. The store itself (layout, publish, pointer, verified fetch) is store.py.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import tempfile
import zipfile
from pathlib import Path

import structlog

from artifacts.errors import ArtifactError, SpecUnreadable
from artifacts.store import ARTIFACT, ArtifactStore
from contracts.app_spec import AppSpec
from spec.load import load_app_spec
from spec.source import SPEC_FILE, source_zip, unpack_source

log = structlog.get_logger(__name__)
ROLLBACK_MARK = "rollback_of"  # beside a rollback's copy: the version it copies


def prune_releases(store: ArtifactStore, tenant: str, keep: int, published: int) -> list[int]:
    """Delete release folders older than the newest `keep`, never the live one or the one
    just published (the reloader runs a local copy, so the shared folder may go)."""
    current = store.read_current(tenant)
    spare = {published, current.version if current else None}
    gone = [m.version for m in store.releases(tenant)[:-keep] if m.version not in spare]
    for version in gone:
        shutil.rmtree(store.release_dir(tenant, version), ignore_errors=True)
    if gone:
        log.info("releases.pruned", versions=gone, keep=keep)
    return gone


def mark_copy(store: ArtifactStore, tenant: str, version: int, target: int) -> None:
    """Remember beside the release which one it copies (a redelivery reuses it)."""
    (store.release_dir(tenant, version) / ROLLBACK_MARK).write_text(str(target))


def is_copy(store: ArtifactStore, tenant: str, version: int, target: int) -> bool:
    mark = store.release_dir(tenant, version) / ROLLBACK_MARK
    return mark.exists() and mark.read_text().strip() == str(target)


def spec_in(artifact: bytes | Path, *, release: str) -> AppSpec:
    """The AppSpec packed inside a release (spec.json at the zipapp's root): the one reader,
    for the builder (a rollback's bytes) and the migrator (a verified copy). `release` names
    it in the error: SpecUnreadable without a readable spec.json, InvalidAppSpec if invalid."""
    try:
        with zipfile.ZipFile(artifact if isinstance(artifact, Path) else io.BytesIO(artifact)) as zf:
            raw = zf.read(SPEC_FILE)
    except (KeyError, zipfile.BadZipFile) as exc:
        raise SpecUnreadable(f"release {release} has no readable {SPEC_FILE}: {exc}") from None
    return load_app_spec(raw)


def release_spec(store: ArtifactStore, tenant_id: str, version: int, sha256: str) -> AppSpec:
    """The spec inside release `version`, from a verified local copy (blocking: run in a thread)."""
    with tempfile.TemporaryDirectory(prefix="hp-migrator-") as tmp:
        local = store.fetch(tenant_id, version, sha256, Path(tmp))
        return spec_in(local.path, release=f"{version} of {tenant_id}")


class NoLiveRelease(LookupError):
    pass


def export_live_source(root: Path, tenant_id: str) -> tuple[int, bytes]:
    """(live version, zip of its source tree) from the verified live artifact: the hybrid
    no-code promise (developers can take over the generated code). The rules for the zips
    themselves are spec.source."""
    store = ArtifactStore(root)
    pointer = store.read_current(tenant_id)
    if pointer is None:
        raise NoLiveRelease(f"{tenant_id} has no live release yet")
    manifest = store.read_manifest(tenant_id, pointer.version)
    data = (store.release_dir(tenant_id, pointer.version) / ARTIFACT).read_bytes()
    if manifest.sha256 != pointer.sha256 or hashlib.sha256(data).hexdigest() != manifest.sha256:
        raise ArtifactError(f"{tenant_id} release {pointer.version} does not match its digest")
    return pointer.version, source_zip(unpack_source(data))
