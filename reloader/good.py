"""The releases that served well, newest last: what a crash loop falls back to.

Kept on the runtime's local disk (`good.json` in its work dir) as versions and digests, so
a runtime started again (after a sleep, a restart of the runtime) still knows which
releases served and treats a failure of one of them as a crash, with the same backoff
and fallback, rather than as a refused new release. Read back through the artifact
store's verified fetch: the file says which releases, never what they contain.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from artifacts.errors import ArtifactError
from artifacts.store import ArtifactStore, LocalRelease

KEPT = 5
FILE = "good.json"


class GoodReleases:
    def __init__(self, store: ArtifactStore, tenant_id: str, work_dir: Path, cache_dir: Path) -> None:
        self.store, self.tenant_id, self.work_dir, self.cache_dir = store, tenant_id, work_dir, cache_dir
        self.releases: list[LocalRelease] = []

    def __contains__(self, release: LocalRelease) -> bool:
        return any(r.sha256 == release.sha256 for r in self.releases)

    def keep(self, release: LocalRelease) -> None:
        self.releases = [r for r in self.releases if r.sha256 != release.sha256][-(KEPT - 1):] + [release]
        self.save()

    def drop(self, release: LocalRelease) -> None:
        self.releases = [r for r in self.releases if r.sha256 != release.sha256]
        self.save()

    def other_than(self, release: LocalRelease) -> LocalRelease | None:
        """The newest good release that is not `release`."""
        return next((r for r in reversed(self.releases) if r.sha256 != release.sha256), None)

    def save(self) -> None:
        data = [{"version": r.version, "sha256": r.sha256} for r in self.releases]
        with contextlib.suppress(OSError):
            tmp = self.work_dir / f".{FILE}.tmp"
            tmp.write_text(json.dumps(data))
            os.replace(tmp, self.work_dir / FILE)

    def load(self) -> None:
        """What an earlier runtime of this tenant kept, each release fetched and verified again."""
        try:
            entries = json.loads((self.work_dir / FILE).read_text())[-KEPT:]
        except (OSError, ValueError, TypeError):
            return
        found = []
        for entry in entries:
            with contextlib.suppress(ArtifactError, OSError, KeyError, TypeError, ValueError):
                found.append(self.store.fetch(self.tenant_id, int(entry["version"]), str(entry["sha256"]),
                                              self.cache_dir))
        self.releases = found
