"""Export of an app's source (the hybrid no-code promise: developers can take over the
generated code). The API calls this; the rules for the zips themselves are spec.source."""

from __future__ import annotations

import hashlib
from pathlib import Path

from artifacts.errors import ArtifactError
from artifacts.store import ARTIFACT, ArtifactStore
from spec.source import source_zip, unpack_source


class NoLiveRelease(LookupError):
    pass


def export_live_source(root: Path, tenant_id: str) -> tuple[int, bytes]:
    """(live version, zip of its source tree) from the verified live artifact."""
    store = ArtifactStore(root)
    pointer = store.read_current(tenant_id)
    if pointer is None:
        raise NoLiveRelease(f"{tenant_id} has no live release yet")
    manifest = store.read_manifest(tenant_id, pointer.version)
    data = (store.release_dir(tenant_id, pointer.version) / ARTIFACT).read_bytes()
    if manifest.sha256 != pointer.sha256 or hashlib.sha256(data).hexdigest() != manifest.sha256:
        raise ArtifactError(f"{tenant_id} release {pointer.version} does not match its digest")
    return pointer.version, source_zip(unpack_source(data))
