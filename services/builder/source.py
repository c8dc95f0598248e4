"""Export and deploy of an app's source (the hybrid no-code promise: developers can take
over the generated code). The API calls these; the builder packages what was deployed."""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from pathlib import Path

from contracts.app_spec import AppSpec, InvalidAppSpec
from reloader.artifacts import ARTIFACT, ArtifactError, ArtifactStore
from services.builder.codegen import SourceError, check_source, read_source_zip, source_zip, unpack_source

MAX_UPLOAD_BYTES = 384 * 1024  # the zip, before base64 (the API body limit applies too)
# A spec's static folder travels with the spec in one request body (512 KB, routes.py):
# 256 KB zipped is 342 KB in base64, which leaves room for a spec of ~160 KB.
MAX_STATIC_ZIP_BYTES = 256 * 1024
MAX_STATIC_FILES = 300


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


@dataclass(frozen=True)
class SourceUpload:
    spec: AppSpec
    digest: str  # sha256 of the zip
    body: bytes


def _decoded(encoded: str, field: str, what: str, limit: int) -> bytes:
    try:
        body = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise SourceError(f"{field} is not base64") from None
    if len(body) > limit:
        raise SourceError(f"{what} is {len(body)} bytes; the limit is {limit}")
    return body


def accept_upload(encoded: str) -> SourceUpload:
    """A base64 zip from `app deploy --source`, checked like the builder will check it
    (compiles, safe paths, valid spec.json). Raises SourceError / InvalidAppSpec."""
    body = _decoded(encoded, "source_zip", "the source zip", MAX_UPLOAD_BYTES)
    files, _static = read_source_zip(body)
    spec = check_source(files)
    return SourceUpload(spec=spec, digest=hashlib.sha256(body).hexdigest(), body=body)


def accept_static(encoded: str) -> tuple[str, bytes]:
    """(sha256, zip) of a spec's static folder sent with a create or update: a base64 zip
    holding only `static/...` files with safe relative paths. Raises SourceError."""
    body = _decoded(encoded, "static_zip", "the static files zip", MAX_STATIC_ZIP_BYTES)
    files, static = read_source_zip(body)
    if len(static) > MAX_STATIC_FILES:
        raise SourceError(f"the static folder holds {len(static)} files; the limit is {MAX_STATIC_FILES}")
    if files:
        raise SourceError(f"the static files zip may hold only static/... files, not {sorted(files)[:3]}")
    if not static:
        raise SourceError("the static files zip holds no file under static/")
    return hashlib.sha256(body).hexdigest(), body


__all__ = ["MAX_STATIC_FILES", "MAX_STATIC_ZIP_BYTES", "accept_static", "InvalidAppSpec", "NoLiveRelease", "SourceError", "SourceUpload", "accept_upload", "export_live_source"]
