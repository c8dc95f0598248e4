"""A throwaway platform on free loopback ports in a folder of its own, for tests and benchmarks."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

from hostplane.local import platform
from hostplane.local.process import free_port
from hostplane.local.services import settings_env
from hostplane.local.state import ConnectionInfo, connection_info
from hostplane.settings import Settings

REPO = Path(__file__).resolve().parents[2]


@dataclass
class RunningPlatform:
    settings: Settings
    conn: ConnectionInfo
    emulator: str

    def env(self) -> dict[str, str]:
        """Environment for a `hostplane` subprocess aimed at this platform."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("HOSTPLANE_")}
        return env | settings_env(self.settings, self.emulator)


def platform_settings(home: Path, emulator: str, *, runtime_ports: int = 100) -> Settings:
    """`runtime_ports`: how many tenant runtimes this platform can host (benchmarks want more)."""
    return Settings(
        home=home,
        emulator=emulator,
        moto_port=free_port(),
        localstack_port=free_port(),
        postgres_port=free_port(),
        valkey_port=free_port(),
        edge_port=free_port(),
        api_port=free_port(),
        # A range of its own per platform, so concurrent test platforms' tenants do not collide.
        runtime_port_base=11000 + runtime_ports * random.randrange(max(1, 18000 // runtime_ports)),
        runtime_port_count=runtime_ports,
        localstack_venv=REPO / ".venv-localstack",
    )


def start_platform(home: Path, emulator: str, *, runtime_ports: int = 100) -> RunningPlatform:
    settings = platform_settings(home, emulator, runtime_ports=runtime_ports)
    platform.up(settings, emulator)  # a LocalStack that cannot start fails here: it never skips
    return RunningPlatform(settings=settings, conn=connection_info(settings.home_dir), emulator=emulator)


def stop_platform(running: RunningPlatform) -> None:
    platform.down(running.settings, purge=True)


def stop_components(settings: Settings, names: tuple[str, ...]) -> None:
    """Stop some of a running platform's processes (tests that play those stages themselves
    by injecting their events); `down` no longer needs to stop them."""
    from hostplane.local import process
    from hostplane.local.state import load_state, save_state

    state = load_state(settings.home_dir)
    for name in names:
        if (comp := state.components.pop(name, None)) is not None:
            process.stop(comp.pid)
    save_state(settings.home_dir, state)
