"""The migrator honours `allow_destructive` only when the API recorded the request it
comes from with it; otherwise it migrates as if it were not set (a destructive plan is
refused, nothing dropped) and logs `command.unrecorded`."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from artifacts.store import ArtifactStore
from contracts.envelope import Envelope
from contracts.events_v1 import TenantChanged
from services.migrator import handlers
from services.migrator.adapters import MigratorDeps

DIGEST = "ab" * 32


class Requests:
    def __init__(self, reason: str | None) -> None:
        self.reason = reason
        self.asked: list[tuple[str, ...]] = []

    async def unrecorded(self, envelope, fields):
        self.asked.append(fields)
        return self.reason


def changed(allow_destructive: bool) -> Envelope:
    return Envelope.new(TenantChanged(version=2, artifact_path="acme/releases/2/app.pyz", sha256=DIGEST, size=1,
                                      spec_sha256=DIGEST, allow_destructive=allow_destructive),
                        tenant_id="acme", producer="builder")


@pytest.mark.parametrize("reason,honoured", [(None, True), ("allow_destructive differs from the recorded request",
                                                             False)])
async def test_allow_destructive_only_as_recorded(tmp_path, monkeypatch, reason, honoured):
    seen: list[TenantChanged] = []

    async def migrate(tenant, event, correlation_id, deps):
        seen.append(event)
        return []

    monkeypatch.setattr(handlers, "_migrate_and_release", migrate)
    requests = Requests(reason)
    deps = MigratorDeps(prefix="hp", secrets=None, store=ArtifactStore(tmp_path), requests=requests)  # type: ignore[arg-type]
    with capture_logs() as logs:
        await handlers.on_tenant_changed(changed(True), deps)
        await handlers.on_tenant_changed(changed(False), deps)
    assert [e.allow_destructive for e in seen] == [honoured, False]
    assert requests.asked == [("allow_destructive",)]  # a build that asks nothing destructive is not looked up
    assert any(e["event"] == "command.unrecorded" for e in logs) is (not honoured)
