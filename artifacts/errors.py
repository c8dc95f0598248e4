"""Why a release must not run or be read: one error class per reason, and `reason` is the
machine code ReleaseFailed (and the migrator's refusal) carries."""

from __future__ import annotations


class ArtifactError(RuntimeError):
    """A release that must not run. `reason` is the machine code ReleaseFailed carries."""

    reason = "artifact_invalid"


class ReleaseNotFound(ArtifactError):
    reason = "release_missing"


class PartialRelease(ArtifactError):
    """The manifest or the artifact is missing from a release folder (writer died?)."""

    reason = "release_partial"


class CorruptManifest(ArtifactError):
    reason = "manifest_corrupt"


class CorruptPointer(ArtifactError):
    reason = "pointer_corrupt"


class DigestMismatch(ArtifactError):
    reason = "digest_mismatch"


class TruncatedArtifact(ArtifactError):
    reason = "artifact_truncated"


class ReleaseExists(ArtifactError):
    """A different artifact was already published under this version (releases are immutable)."""

    reason = "release_exists"


class SpecUnreadable(ArtifactError):
    """A release without a readable spec.json at its root (the builder always puts one there)."""

    reason = "spec_missing"
