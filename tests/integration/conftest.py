"""Integration fixtures: one real platform per emulator, shared by the session."""

from __future__ import annotations

import pytest

from hostplane.local.ephemeral import RunningPlatform, start_platform, stop_platform

EMULATORS = ["moto", "localstack"]


@pytest.fixture(scope="session", params=EMULATORS)
def running_platform(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp(f"hostplane-{request.param}")
    running: RunningPlatform = start_platform(home, request.param)
    try:
        yield running
    finally:
        stop_platform(running)
