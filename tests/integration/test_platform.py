"""`hostplane up / status / down` as a user runs them, against real servers."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import psutil
import pytest

from core.process import port_open
from hostplane.local.ephemeral import RunningPlatform, platform_settings

pytestmark = pytest.mark.integration


def hostplane(env: dict[str, str], *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hostplane", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def _platform_pids(home: str) -> list[int]:
    """Processes whose command line or working files point into this platform's home."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "environ"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
            environ = proc.info["environ"] or {}
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if home in cmd or any(home in v for v in environ.values()):
            found.append(proc.info["pid"])
    return found


@pytest.mark.parametrize("emulator", ["moto", "localstack"])
def test_up_is_idempotent_and_down_leaves_nothing(tmp_path, emulator):
    settings = platform_settings(tmp_path / "home", emulator)
    env = RunningPlatform(settings=settings, conn=None, emulator=emulator).env()  # type: ignore[arg-type]
    try:
        first = hostplane(env, "up")
        assert first.returncode == 0, first.stderr + first.stdout
        st = json.loads(hostplane(env, "status", "--json").stdout)
        assert {emulator, "postgres", "valkey", "caddy", "runtime-agent"} <= set(st["components"])
        assert all(c["healthy"] for c in st["components"].values()), st
        assert st["edge"] == f"http://localhost:{settings.edge_port}"
        assert "api" in st and isinstance(st["runtime"], dict)

        second = hostplane(env, "up")
        assert second.returncode == 0, second.stderr
        assert second.stdout.count("running") >= 4 and "started" not in second.stdout
        assert _platform_pids(str(settings.home_dir)), "servers should be running"
    finally:
        done = hostplane(env, "down")
    assert done.returncode == 0, done.stderr
    ports = [settings.emulator_port(emulator), settings.postgres_port, settings.valkey_port,
             settings.edge_port]
    assert not [p for p in ports if port_open("127.0.0.1", p)]
    assert _platform_pids(str(settings.home_dir)) == []
    assert (settings.home_dir / "postgres" / "data" / "PG_VERSION").exists(), "data kept without --purge"
    purge = hostplane(env, "down", "--purge")
    assert purge.returncode == 0 and not settings.home_dir.exists()


def test_port_in_use_is_named_and_nothing_is_left_running(tmp_path):
    settings = platform_settings(tmp_path / "home", "moto")
    env = RunningPlatform(settings=settings, conn=None, emulator="moto").env()  # type: ignore[arg-type]
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", settings.valkey_port))
    blocker.listen()
    try:
        result = hostplane(env, "up")
    finally:
        blocker.close()
    assert result.returncode != 0
    assert str(settings.valkey_port) in result.stderr and "HOSTPLANE_VALKEY_PORT" in result.stderr
    assert _platform_pids(str(settings.home_dir)) == [], "a failed up stops what it started"
    assert json.loads(hostplane(env, "status", "--json").stdout)["components"] == {}
