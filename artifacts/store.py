"""The artifact store: compiled releases per tenant and the pointer to the live one.

Layout (same on EFS and on a local disk)::

    <root>/<tenant>/releases/<version>/app.pyz        immutable once written
    <root>/<tenant>/releases/<version>/manifest.json  version, sha256, size, built_at
    <root>/<tenant>/current.json                      generation, version, sha256

Writers (builder, migrator) publish a release by writing a hidden temporary folder
and renaming it into place, and move the pointer by writing a temporary file,
fsyncing it and renaming it over `current.json`; `generation` grows on every pointer
change, a rollback included, so a reader never mistakes a stale read for news.
Readers (the reloader) open and read, never stat: on NFS an open+read is fresh
(close-to-open consistency) while attribute caches lag. A release is copied to local
disk and its size and sha256 checked before anything runs it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from artifacts.errors import (
    ArtifactError,
    CorruptManifest,
    CorruptPointer,
    DigestMismatch,
    PartialRelease,
    ReleaseExists,
    ReleaseNotFound,
    TruncatedArtifact,
)
from contracts.naming import tenant_names

ARTIFACT = "app.pyz"
MANIFEST = "manifest.json"
POINTER = "current.json"
DEFAULT_ENTRY = "app:app"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Manifest:
    version: int
    sha256: str
    size: int
    built_at: str
    entry: str = DEFAULT_ENTRY  # "module:attribute" of the ASGI app inside the zipapp

    @classmethod
    def parse(cls, raw: bytes, where: Path) -> Manifest:
        try:
            data = json.loads(raw)
            manifest = cls(version=int(data["version"]), sha256=str(data["sha256"]), size=int(data["size"]),
                           built_at=str(data["built_at"]), entry=str(data.get("entry", DEFAULT_ENTRY)))
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptManifest(f"{where} is not a valid manifest: {exc}") from None
        if len(manifest.sha256) != 64 or manifest.size < 0 or manifest.version < 1:
            raise CorruptManifest(f"{where} has an invalid version, sha256 or size")
        return manifest


@dataclass(frozen=True)
class Pointer:
    """`current.json`: which release is live. `sha256` is the digest its manifest must carry."""

    generation: int
    version: int
    sha256: str
    updated_at: str
    correlation_id: str | None = None

    @classmethod
    def parse(cls, raw: bytes, where: Path) -> Pointer:
        try:
            data = json.loads(raw)
            return cls(generation=int(data["generation"]), version=int(data["version"]),
                       sha256=str(data["sha256"]), updated_at=str(data.get("updated_at", "")),
                       correlation_id=data.get("correlation_id"))
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptPointer(f"{where} is not a valid release pointer: {exc}") from None


@dataclass(frozen=True)
class LocalRelease:
    """A verified copy of a release on local disk: the only thing the reloader runs."""

    tenant_id: str
    version: int
    sha256: str
    path: Path
    entry: str


def _read(path: Path) -> bytes:
    with open(path, "rb") as fh:  # open+read: fresh on NFS, unlike stat()
        return fh.read()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _now() -> str:
    return datetime.now(UTC).isoformat()


class ArtifactStore:
    """Read and write one artifact store root. Safe for one writer per tenant pointer and
    any number of readers; pointer writers are serialised with a POSIX lock (NFSv4 has them)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def tenant_dir(self, tenant_id: str) -> Path:
        return self.root / tenant_names(tenant_id).artifact_dir

    def release_dir(self, tenant_id: str, version: int) -> Path:
        return self.tenant_dir(tenant_id) / "releases" / str(int(version))

    def pointer_path(self, tenant_id: str) -> Path:
        return self.tenant_dir(tenant_id) / POINTER

    # --- writers ------------------------------------------------------------------------

    def publish_release(self, tenant_id: str, version: int, artifact: bytes | Path, *,
                        entry: str = DEFAULT_ENTRY, built_at: str | None = None) -> Manifest:
        """Write release `version` once. Publishing the same bytes again is a no-op (safe to
        retry); different bytes under an existing version raise ReleaseExists."""
        data = artifact.read_bytes() if isinstance(artifact, Path) else bytes(artifact)
        digest = hashlib.sha256(data).hexdigest()
        final = self.release_dir(tenant_id, version)
        if final.exists():
            existing = self.read_manifest(tenant_id, version)
            if existing.sha256 != digest:
                raise ReleaseExists(f"{tenant_id} release {version} exists with another digest")
            return existing
        manifest = Manifest(version=int(version), sha256=digest, size=len(data),
                            built_at=built_at or _now(), entry=entry)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".tmp-{version}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            _write_durably(tmp / ARTIFACT, data)
            _write_durably(tmp / MANIFEST, json.dumps(asdict(manifest), indent=2).encode())
            _fsync_dir(tmp)
            os.rename(tmp, final)  # a non-empty target makes this fail: never overwrite a release
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if final.exists():  # a concurrent writer won the race: same rules as above
                return self.publish_release(tenant_id, version, data, entry=entry)
            raise
        _fsync_dir(final.parent)
        return manifest

    def set_current(self, tenant_id: str, version: int, *, correlation_id: str | None = None) -> Pointer:
        """Make `version` the live release (a rollback is just an older version): the new
        pointer gets the next generation and the digest from the release's manifest."""
        manifest = self.read_manifest(tenant_id, version)
        path = self.pointer_path(tenant_id)
        with self._pointer_lock(tenant_id):
            try:
                previous = self.read_current(tenant_id)
            except CorruptPointer:
                previous = None  # a broken pointer must not block the repair
            pointer = Pointer(generation=(previous.generation if previous else 0) + 1, version=manifest.version,
                              sha256=manifest.sha256, updated_at=_now(), correlation_id=correlation_id)
            tmp = path.with_name(f".{POINTER}.{uuid.uuid4().hex[:8]}")
            _write_durably(tmp, json.dumps(asdict(pointer)).encode())
            os.replace(tmp, path)
            _fsync_dir(path.parent)
        return pointer

    @contextlib.contextmanager
    def _pointer_lock(self, tenant_id: str):
        lock = self.tenant_dir(tenant_id) / ".current.lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        with open(lock, "a+") as fh:
            fcntl.lockf(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.lockf(fh, fcntl.LOCK_UN)

    # --- readers ------------------------------------------------------------------------

    def read_current(self, tenant_id: str) -> Pointer | None:
        """The live pointer, or None when the tenant has no release yet."""
        path = self.pointer_path(tenant_id)
        try:
            raw = _read(path)
        except FileNotFoundError:
            return None
        return Pointer.parse(raw, path)

    def read_manifest(self, tenant_id: str, version: int) -> Manifest:
        folder = self.release_dir(tenant_id, version)
        try:
            raw = _read(folder / MANIFEST)
        except FileNotFoundError:
            if folder.exists():
                raise PartialRelease(f"{folder} has no {MANIFEST}") from None
            raise ReleaseNotFound(f"{tenant_id} has no release {version}") from None
        manifest = Manifest.parse(raw, folder / MANIFEST)
        if manifest.version != int(version):
            raise CorruptManifest(f"{folder / MANIFEST} names version {manifest.version}")
        return manifest

    def releases(self, tenant_id: str) -> list[Manifest]:
        """Every complete release, oldest first (for `tenant releases` and rollbacks)."""
        out = []
        for child in (self.tenant_dir(tenant_id) / "releases").glob("[0-9]*"):
            with contextlib.suppress(ArtifactError, ValueError):
                out.append(self.read_manifest(tenant_id, int(child.name)))
        return sorted(out, key=lambda m: m.version)

    def fetch(self, tenant_id: str, version: int, expected_sha256: str, cache_dir: Path) -> LocalRelease:
        """Copy the release to `cache_dir` (local disk) and verify it on the way: the manifest
        must carry `expected_sha256` (the pointer's), the copy must match size and digest."""
        manifest = self.read_manifest(tenant_id, version)
        if manifest.sha256 != expected_sha256:
            raise DigestMismatch(f"{tenant_id} release {version}: manifest digest {manifest.sha256[:12]} "
                                 f"is not the pointer's {expected_sha256[:12]}")
        cache_dir.mkdir(parents=True, exist_ok=True)
        # Named by content, not version: a rollback (a new version, the old bytes) finds its copy here.
        local = cache_dir / f"{manifest.sha256[:32]}.pyz"
        if not self._cached_intact(local, manifest):  # the cache is on the tenant's disk: checked on each use
            self._copy_verified(self.release_dir(tenant_id, version) / ARTIFACT, local, manifest)
        return LocalRelease(tenant_id=tenant_id, version=manifest.version, sha256=manifest.sha256,
                            path=local, entry=manifest.entry)

    @staticmethod
    def _cached_intact(local: Path, manifest: Manifest) -> bool:
        """A copy fetched earlier still has the manifest's size and digest (a release is small:
        hashing it again costs about a millisecond, a damaged copy would run as the release)."""
        try:
            if local.stat().st_size != manifest.size:
                return False
            digest = hashlib.sha256()
            with open(local, "rb") as fh:
                while chunk := fh.read(_CHUNK):
                    digest.update(chunk)
        except OSError:
            return False
        return digest.hexdigest() == manifest.sha256

    @staticmethod
    def _copy_verified(source: Path, local: Path, manifest: Manifest) -> None:
        tmp = local.with_name(f".{local.name}.{uuid.uuid4().hex[:8]}")
        digest, size = hashlib.sha256(), 0
        try:
            with open(source, "rb") as src, open(tmp, "wb") as dst:
                while chunk := src.read(_CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    dst.write(chunk)
        except FileNotFoundError:
            tmp.unlink(missing_ok=True)
            raise PartialRelease(f"{source} is missing") from None
        if size != manifest.size:
            tmp.unlink(missing_ok=True)
            cls = TruncatedArtifact if size < manifest.size else DigestMismatch
            raise cls(f"{source} is {size} bytes, its manifest says {manifest.size}")
        if digest.hexdigest() != manifest.sha256:
            tmp.unlink(missing_ok=True)
            raise DigestMismatch(f"{source} has sha256 {digest.hexdigest()[:12]}, "
                                 f"its manifest says {manifest.sha256[:12]}")
        os.replace(tmp, local)


def store_root(settings) -> Path:
    """Where the local platform keeps artifacts (EFS mount on AWS): `<home>/artifacts`."""
    return Path(settings.artifacts_dir or settings.home_dir / "artifacts")
