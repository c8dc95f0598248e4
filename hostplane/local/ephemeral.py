"""A throwaway platform on free loopback ports in a folder of its own, for tests and benchmarks."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from hostplane.local import platform
from core.ports import free_ports, listen_band, reserve, unreserve
from hostplane.local.services import settings_env
from core.state import ConnectionInfo, connection_info
from core.settings import Settings

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


RUNTIME_FLOOR = 10000
PLATFORM_HOURS = 3600.0  # how long a platform's runtime range stays reserved: longer than a test run


RUNTIME_BLOCK = 100  # ranges are reserved block by block, so ranges of any size never overlap


def runtime_port_base(count: int) -> int:
    """The first port of a range of `count` tenant ports no other platform on this host reserved
    in the last hour, below the band the servers' ports come from (core.ports). Each
    RUNTIME_BLOCK-port block of the range is reserved by its own name: a benchmark's 2,000
    ports and a test's 100 cannot share a block (by range name they once did)."""
    blocks = -(-count // RUNTIME_BLOCK)
    span = blocks * RUNTIME_BLOCK
    slots = list(range(RUNTIME_FLOOR, listen_band().start - span + 1, span))
    random.shuffle(slots)
    for base in slots:
        names = [f"runtime-block-{b}" for b in range(base, base + span, RUNTIME_BLOCK)]
        taken = []
        for name in names:
            if not reserve(name, PLATFORM_HOURS):
                break
            taken.append(name)
        else:
            return base
        for name in taken:  # part of the range is someone else's: give back what we took
            unreserve(name)
    return slots[0]  # all reserved: overlap is survivable (allocation skips ports in use)


def platform_settings(home: Path, emulator: str, *, runtime_ports: int = 100) -> Settings:
    """`runtime_ports`: how many tenant runtimes this platform can host (benchmarks want more)."""
    moto, localstack, postgres, valkey, edge, resolver, api = free_ports(7)
    return Settings(
        home=home,
        emulator=emulator,
        moto_port=moto,
        localstack_port=localstack,
        postgres_port=postgres,
        valkey_port=valkey,
        edge_port=edge,
        resolver_port=resolver,
        api_port=api,
        # A range of its own per platform, so concurrent test platforms' tenants do not collide.
        runtime_port_base=runtime_port_base(runtime_ports),
        runtime_port_count=runtime_ports,
        localstack_venv=REPO / ".venv-localstack",
        # Faults heal sooner: a killed service's message comes back in 15 s, not 60 (the
        # heartbeat, a third of it, keeps live ones), and a failing one is retried after 1, 3,
        # 6, 12 s, not 2, 4, 8, 16. The retries must still outlast a PostgreSQL restart (the
        # faults tests take about 10 s): with a 0.5 s base (0+1+2+4 s) a migration caught by
        # one was dead-lettered.
        redelivery_s=15,
        retry_delay_s=1.5,
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
    from core import process
    from core.state import load_state, save_state

    state = load_state(settings.home_dir)
    for name in names:
        if (comp := state.components.pop(name, None)) is not None:
            process.stop(comp.pid)
    save_state(settings.home_dir, state)


@contextmanager
def relaying_for(settings: Settings, services: tuple[str, ...]) -> Iterator[None]:
    """While a test plays `services` (stopped with `stop_components`), publish the events it
    commits in their name: each service's relay publishes only its own sources
    (events.outbox.relay_sources), so with the service stopped nothing else would. The relay
    runs on its own event loop in a thread, for tests that have none."""
    import asyncio
    import threading

    import asyncpg

    from events.outbox import OutboxRelay, relay_sources
    from events.publisher import Publisher
    from events.topology import topology

    sources = tuple(p for s in services for p in relay_sources(s))
    ready, loop = threading.Event(), asyncio.new_event_loop()
    box: dict[str, OutboxRelay] = {}

    async def run() -> None:
        pool = await asyncpg.create_pool(connection_info(settings.home_dir).control_dsn, min_size=1, max_size=2)
        try:
            box["relay"] = OutboxRelay(pool, Publisher(settings, topology(settings.name_prefix).bus_name),
                                       sources=sources, poll_interval_s=0.2)
            ready.set()
            await box["relay"].run()
        finally:
            ready.set()
            await pool.close()

    thread = threading.Thread(target=loop.run_until_complete, args=(run(),), daemon=True)
    thread.start()
    ready.wait(30)
    try:
        yield
    finally:
        if (relay := box.get("relay")) is not None:
            loop.call_soon_threadsafe(relay.stop)
        thread.join(15)
