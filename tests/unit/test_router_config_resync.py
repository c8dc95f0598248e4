"""Router-config's periodic re-sync: the period is the README's 30 s unless
HOSTPLANE_ROUTER_RESYNC_S says otherwise, and the service re-syncs Caddy once at start
and then once per period, a failed round (Caddy away) not stopping the next ones.
The e2e fault test relies on all three at the default period (tests/e2e/test_faults.py)."""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import re
import statistics
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from core.settings import Settings
from services.router_config import service
from services.router_config.routes import catch_all

REPO = Path(__file__).resolve().parents[2]
PERIOD = 0.05


def fresh_service(monkeypatch, setting: str | None):
    """A private copy of the service module, imported with HOSTPLANE_ROUTER_RESYNC_S as given."""
    if setting is None:
        monkeypatch.delenv("HOSTPLANE_ROUTER_RESYNC_S", raising=False)
    else:
        monkeypatch.setenv("HOSTPLANE_ROUTER_RESYNC_S", setting)
    spec = importlib.util.spec_from_file_location("router_config_service_copy", service.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_default_period_is_the_documented_30_s(monkeypatch):
    default = fresh_service(monkeypatch, None)
    assert default.RESYNC_EVERY_S == 30.0
    assert inspect.signature(default.open_router).parameters["resync_every"].default == 30.0
    readme = " ".join((REPO / "README.md").read_text().split())
    documented = re.search(r"re-syncs Caddy from its `routes` table at start and every (\d+) s", readme)
    assert documented and float(documented.group(1)) == default.RESYNC_EVERY_S


def test_the_period_setting_is_honoured(monkeypatch):
    assert fresh_service(monkeypatch, "0.5").RESYNC_EVERY_S == 0.5


class CountingEdge:
    """Caddy holding only the catch-all; notes when each re-sync reads it; away on round 2."""

    def __init__(self, admin_url, base_config) -> None:
        self.reads: list[float] = []
        self.closed = False

    async def routes(self):
        self.reads.append(time.monotonic())
        if len(self.reads) == 2:
            raise httpx.ConnectError("caddy is restarting")
        return [catch_all()]

    async def load(self, routes):
        raise AssertionError("nothing drifted: no load expected")

    async def aclose(self) -> None:
        self.closed = True


class EmptyRoutes:
    def __init__(self, pool) -> None:
        pass

    async def ensure_schema(self) -> None:
        pass

    async def live_routes(self):
        return []


class FakePool:
    def acquire(self):
        return self

    async def __aenter__(self):
        return object()

    async def __aexit__(self, *exc) -> None:
        pass

    async def close(self) -> None:
        pass


@pytest.fixture
def wired(monkeypatch):
    """open_router with its I/O faked: no database, no Caddy."""
    async def create_pool(*args, **kwargs):
        return FakePool()

    async def ensure_desired(conn) -> None:
        pass

    monkeypatch.setenv("HOSTPLANE_CADDY_ADMIN_URL", "http://127.0.0.1:1")
    monkeypatch.setattr(service, "asyncpg", SimpleNamespace(create_pool=create_pool))
    monkeypatch.setattr(service, "RouteStore", EmptyRoutes)
    monkeypatch.setattr(service, "desired", SimpleNamespace(ensure_schema=ensure_desired))
    monkeypatch.setattr(service, "CaddyEdge", CountingEdge)
    return Settings(aws_endpoint_url="http://127.0.0.1:4580")


async def test_open_router_resyncs_at_start_then_once_per_period_through_a_failed_round(wired):
    assert inspect.signature(service.open_router).parameters["resync_every"].default == service.RESYNC_EVERY_S
    started = time.monotonic()
    deps = await service.open_router(wired, "postgresql://unused", resync_every=PERIOD)
    opened = time.monotonic()
    edge = deps.edge
    try:
        assert len(edge.reads) == 1 and started <= edge.reads[0] <= opened  # at start, before serving
        deadline = time.monotonic() + 5
        while len(edge.reads) < 7:  # round 2 failed: the loop went on
            assert time.monotonic() < deadline, f"{len(edge.reads)} re-syncs in 5 s at a {PERIOD} s period"
            await asyncio.sleep(PERIOD / 5)
    finally:
        await deps.aclose()
    gaps = [b - a for a, b in zip(edge.reads, edge.reads[1:])]
    assert min(gaps) >= PERIOD - 0.005, gaps  # never sooner than the period
    assert statistics.median(gaps) < 4 * PERIOD, gaps  # and not much later (a loaded machine's slack)
    count = len(edge.reads)
    await asyncio.sleep(3 * PERIOD)
    assert len(edge.reads) == count and edge.closed  # closed: the loop stopped with it
