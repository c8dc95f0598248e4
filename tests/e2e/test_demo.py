"""`hostplane demo` as a user runs it: platform up, the example request travels the bus."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from hostplane.local.ephemeral import RunningPlatform, platform_settings

pytestmark = pytest.mark.e2e
EMULATOR = os.environ.get("HOSTPLANE_E2E_EMULATOR")


def hostplane(env, *args, timeout=300):
    return subprocess.run([sys.executable, "-m", "hostplane", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("emulator", [EMULATOR] if EMULATOR else ["moto", "localstack"])
def test_demo_runs_the_example_through_the_bus(tmp_path, emulator):
    settings = platform_settings(tmp_path / "home", emulator)
    env = RunningPlatform(settings=settings, conn=None, emulator=emulator).env()  # type: ignore[arg-type]
    env["COLUMNS"] = "200"
    try:
        demo = hostplane(env, "demo")
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert "TenantRequested" in demo.stdout and "TenantProvisioned" in demo.stdout
        listed = hostplane(env, "events", "list", "--tenant", "demo", "--json")
        assert listed.returncode == 0, listed.stderr
        events = json.loads(listed.stdout)
        types = [e["event_type"] for e in events]
        assert types[0] == "TenantRequested" and "TenantProvisioned" in types, types
        assert all(e["tenant_id"] == "demo" and e["published_at"] for e in events)
        shown = json.loads(hostplane(env, "tenant", "show", "demo", "--json").stdout)
        assert shown["name"] == "demo" and shown["state"] not in ("failed", "requested"), shown
        creds = (settings.home_dir / "credentials.json").read_text()
        for secret in json.loads(creds).values():
            assert secret not in demo.stdout + demo.stderr + listed.stdout + listed.stderr
    finally:
        down = hostplane(env, "down", "--purge")
    assert down.returncode == 0, down.stderr
