"""core.metrics: handlers counted and timed per event type; the reloader's /metrics."""

import httpx
import pytest
from prometheus_client import REGISTRY

from core import metrics
from reloader.health import serve_health
from reloader.metrics import RuntimeMetrics


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


async def test_the_reloader_health_port_serves_metrics_counted_before_the_library_loaded():
    runtime_metrics = RuntimeMetrics("unit-tenant")
    runtime_metrics.swapped(0.3)  # before the first scrape: held as a number
    runtime_metrics.release_failed()
    server = await serve_health("127.0.0.1", 0, lambda: {"status": "ok"}, runtime_metrics.exposition)
    port = server.sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            runtime_metrics.swapped(0.7)  # after it: straight to core.metrics
            again = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            health = await client.get(f"http://127.0.0.1:{port}/runtime/healthz")
    finally:
        server.close()
        await server.wait_closed()
    assert 'hostplane_reloader_swaps_total{tenant="unit-tenant"} 1.0' in text
    assert 'hostplane_reloader_releases_failed_total{tenant="unit-tenant"} 1.0' in text
    assert 'hostplane_reloader_swap_seconds_bucket{le="0.5",tenant="unit-tenant"} 1.0' in text
    assert 'hostplane_reloader_swaps_total{tenant="unit-tenant"} 2.0' in again
    assert 'hostplane_reloader_swap_seconds_sum{tenant="unit-tenant"} 1.0' in again
    assert health.json() == {"status": "ok"}


def test_a_reloader_loads_the_metrics_library_and_tls_only_when_scraped():
    """In a child, as a reloader that reports through files starts: ssl hidden, a swap and a
    restart counted without prometheus-client; the first scrape loads both and shows them."""
    import subprocess
    import sys

    code = ("import sys; from reloader import hide_platform_packages; hide_platform_packages(tls=False)\n"
            "import asyncio\n"
            "from reloader.metrics import RuntimeMetrics\n"
            "m = RuntimeMetrics('t1'); m.swapped(0.2); m.app_restarted()\n"
            "print('prometheus_client' in sys.modules, sys.modules.get('ssl', 'absent'))\n"
            "text = m.exposition()[0].decode()\n"
            "print('hostplane_reloader_app_restarts_total{tenant=\"t1\"} 1.0' in text, sys.modules['ssl'] is not None)\n")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert shown == ["False", "None", "True", "True"]


def test_a_reloader_hides_tls_only_when_its_events_go_to_a_file_and_refuses_a_disagreeing_command_line():
    """The reloader decides before asyncio is imported (in a child: the choice is process-wide)."""
    import subprocess
    import sys

    def ssl_after_import(*argv: str) -> str:
        code = "import sys; import reloader.__main__; print(sys.modules.get('ssl', 'absent') is None)"
        return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                              check=True).stdout.strip()

    assert ssl_after_import("--events", "file:/tmp/e.jsonl") == "True"
    assert ssl_after_import("--events=none") == "True"
    assert ssl_after_import() == "False", "the default, bus (AWS), speaks TLS"
    assert ssl_after_import("--ev", "file:/tmp/e.jsonl") == "False", "an abbreviation keeps TLS"
    refused = subprocess.run([sys.executable, "-m", "reloader", "--tenant", "t", "--artifacts", "/nonexistent",
                              "--events", "file:/tmp/e.jsonl", "--ev", "bus"], capture_output=True, text=True)
    assert refused.returncode != 0 and "--events: give it whole" in refused.stderr
