"""The builder carries out a command only as the API recorded it, and only while it is
the tenant's latest intent: otherwise nothing is read, built or published, no BuildFailed."""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from artifacts.store import ArtifactStore
from contracts.app_spec import spec_ref
from contracts.envelope import Envelope
from contracts.events_v1 import AppUpdateRequested, RollbackRequested, TenantProvisioned
from services.builder.adapters import BuilderDeps
from services.builder.handlers import on_app_update_requested, on_rollback_requested, on_tenant_provisioned
from tests.support.events import sample

DIGEST = "ab" * 32


class Inputs:
    def __init__(self, unrecorded: str | None = None, superseded: str | None = None) -> None:
        self.answers = (unrecorded, superseded)
        self.asked: list[tuple[str, tuple[str, ...]]] = []
        self.read = 0

    async def unrecorded(self, envelope, fields):
        self.asked.append((envelope.event_type, fields))
        return self.answers[0]

    async def superseded(self, envelope):
        return self.answers[1]

    async def spec_body(self, digest):
        self.read += 1
        return None

    async def source_body(self, digest):
        self.read += 1
        return None


def commands() -> list[Envelope]:
    return [
        Envelope.new(AppUpdateRequested(spec_ref=spec_ref(DIGEST), spec_sha256=DIGEST, allow_destructive=True,
                                        source_ref="source:sha256:" + "cd" * 32), tenant_id="victim", producer="api"),
        Envelope.new(sample(TenantProvisioned), tenant_id="victim", producer="provisioner"),
        Envelope.new(RollbackRequested(to_version=1), tenant_id="victim", producer="api"),
    ]


HANDLER = {"AppUpdateRequested": on_app_update_requested, "TenantProvisioned": on_tenant_provisioned,
           "RollbackRequested": on_rollback_requested}


@pytest.mark.parametrize("answers,log", [(("spec_sha256 differs from the recorded request", None), "command.unrecorded"),
                                         ((None, "delete"), "command.superseded")])
async def test_an_unrecorded_or_superseded_command_changes_nothing(tmp_path: Path, answers, log):
    inputs = Inputs(*answers)
    deps = BuilderDeps("hp", inputs=inputs, store=ArtifactStore(tmp_path), static=None)  # type: ignore[arg-type]
    for envelope in commands():
        with capture_logs() as logs:
            assert await HANDLER[envelope.event_type](envelope, deps) == []
        assert [e["event"] for e in logs] == [log]
    assert inputs.read == 0 and not list(tmp_path.iterdir())


async def test_the_fields_a_build_depends_on_are_the_ones_checked(tmp_path: Path):
    inputs = Inputs("no")
    deps = BuilderDeps("hp", inputs=inputs, store=ArtifactStore(tmp_path), static=None)  # type: ignore[arg-type]
    for envelope in commands():
        await HANDLER[envelope.event_type](envelope, deps)
    assert dict(inputs.asked) == {
        "AppUpdateRequested": ("spec_ref", "spec_sha256", "source_ref", "static_ref", "allow_destructive"),
        "TenantProvisioned": ("spec_ref", "spec_sha256", "static_ref"),
        "RollbackRequested": ("to_version",),
    }
