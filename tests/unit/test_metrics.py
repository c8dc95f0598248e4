"""core.metrics: handlers counted and timed per event type; the reloader's /metrics."""

import httpx
import pytest
from prometheus_client import REGISTRY

from core import metrics
from reloader.health import serve_health


def _value(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_instrument_counts_handled_and_failed_and_times_both():
    async def ok(envelope, deps):
        return ["event"]

    async def broken(envelope, deps):
        raise RuntimeError("boom")

    labels = {"service": "unit-svc", "event_type": "UnitEvent"}
    before = _value("hostplane_handler_seconds_count", **labels)
    assert await metrics.instrument("unit-svc", "UnitEvent", ok)(None, None) == ["event"]
    with pytest.raises(RuntimeError):
        await metrics.instrument("unit-svc", "UnitEvent", broken)(None, None)
    assert _value("hostplane_messages_total", outcome="handled", **labels) == 1
    assert _value("hostplane_messages_total", outcome="failed", **labels) == 1
    assert _value("hostplane_handler_seconds_count", **labels) == before + 2


def test_the_edge_route_helper_sets_the_gauge():
    metrics.set_edge_routes(7)
    assert _value("hostplane_edge_routes") == 7


async def test_the_reloader_health_port_serves_metrics():
    metrics.SWAPS.labels("unit-tenant").inc()
    server = await serve_health("127.0.0.1", 0, lambda: {"status": "ok"})
    port = server.sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            health = await client.get(f"http://127.0.0.1:{port}/runtime/healthz")
    finally:
        server.close()
        await server.wait_closed()
    assert 'hostplane_reloader_swaps_total{tenant="unit-tenant"} 1.0' in text
    assert health.json() == {"status": "ok"}
