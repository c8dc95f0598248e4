"""The tenant's folder in the artifact store (`<root>/<tenant>/`) as a resource: removed at
teardown, listed by the orphan doctor. The root is the one the reloader reads (store_root)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from contracts.tenant import TenantNames


def _ref(names: TenantNames) -> str:
    """The folder's ResourceRef (contracts.fields): 'artifacts:<folder>'."""
    return f"artifacts:{names.artifact_dir}"


class TenantArtifacts:
    def __init__(self, root: Path) -> None:
        self.root = root

    def folder(self, names: TenantNames) -> Path:
        return self.root / names.artifact_dir

    async def remove(self, names: TenantNames) -> list[str]:
        folder = self.folder(names)
        if not folder.exists():
            return []
        await asyncio.to_thread(shutil.rmtree, folder)
        return [_ref(names)]

    async def existing(self, names: TenantNames) -> list[str]:
        return [_ref(names)] if self.folder(names).exists() else []

    def folders(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
