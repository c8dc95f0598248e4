"""Edge churn benchmark: does one tenant's route change disturb another tenant's clients,
and does a change cost more as tenants grow? (issue 19; docs/architecture.md, "Edge".)

On a throwaway platform (moto, PostgreSQL, Valkey, Caddy, the route resolver) whose own
router-config and runtime agent are stopped, this script plays router-config through its
handlers and serves each bystander tenant's registered port with a small keep-alive HTTP
server of its own. Measured:

1. churn: `--bystanders` tenants, each read by one keep-alive client without retries
   (http.client, one persistent connection), while `--churn` other tenants are created
   and deleted; every failed request is counted by its error. Each change's visibility
   at the edge: from the handler's return until the edge serves the new tenant (create)
   or answers 404 (delete), polled every 5 ms.
2. route change cost at 50, 500 and 2,000 registered routes (rows registered in bulk,
   without runtimes): router-config's write for a create and for a delete, in ms.
3. edge latency for one tenant at 50 and at 2,000 registered routes: sequential GETs on
   one keep-alive connection, p50 / p99 in ms.

    python bench/edge_churn.py [--bystanders 10] [--churn 100] [--requests 2000]

Prints tables and saves bench/results/edge-churn-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import platform as host_platform
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import asyncpg
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.support.fleet import summary  # noqa: E402
from contracts.envelope import Envelope  # noqa: E402
from contracts.events_v1 import TenantDeletionRequested, TenantProvisioned  # noqa: E402
from contracts.tenant import tenant_names  # noqa: E402
from core import process  # noqa: E402
from core.state import load_state, save_state  # noqa: E402
from hostplane.local.ephemeral import start_platform, stop_platform  # noqa: E402
from services.resources import registry  # noqa: E402
from services.router_config.handlers import on_tenant_deletion_requested, on_tenant_provisioned  # noqa: E402
from services.router_config.service import open_router  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
DIGEST = "ab" * 32


class Hello(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out at once (no 40 ms delayed-ACK stall)

    def do_GET(self):  # noqa: N802
        body = b"hello"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def serve(port: int) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", port), Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def provisioned(tenant: str) -> Envelope:
    n = tenant_names(tenant)
    return Envelope.new(TenantProvisioned(
        database=n.database, db_role=n.db_role, cache_user=n.cache_user, cache_prefix=n.cache_prefix,
        bucket=n.bucket, secret_name=n.secret, runtime_service=n.runtime_service, spec_ref="spec:sha256:" + DIGEST,
        spec_sha256=DIGEST), tenant_id=tenant, producer="provisioner")


def deletion(tenant: str) -> Envelope:
    return Envelope.new(TenantDeletionRequested(), tenant_id=tenant, producer="api")


def status(edge_port: int, host: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", edge_port, timeout=5)
    try:
        conn.request("GET", "/", headers={"Host": host})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except OSError:
        return 0
    finally:
        conn.close()


def until(edge_port: int, host: str, wanted: int, timeout: float = 10.0) -> float:
    start = time.perf_counter()
    while status(edge_port, host) != wanted:
        if time.perf_counter() - start > timeout:
            return float("inf")
        time.sleep(0.005)
    return (time.perf_counter() - start) * 1000


def reader(edge_port: int, host: str, stop: threading.Event, outcome: Counter) -> None:
    """One persistent connection, no retries: a failed request counts and reconnects."""
    conn = http.client.HTTPConnection("127.0.0.1", edge_port, timeout=5)
    while not stop.is_set():
        try:
            conn.request("GET", "/", headers={"Host": host})
            resp = conn.getresponse()
            resp.read()
            outcome["ok" if resp.status == 200 else f"HTTP {resp.status}"] += 1
        except Exception as exc:  # noqa: BLE001 - what a client without retries sees
            outcome[type(exc).__name__] += 1
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", edge_port, timeout=5)
        time.sleep(0.002)
    conn.close()


def latency(edge_port: int, host: str, requests: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", edge_port, timeout=5)
    out = []
    for _ in range(requests):
        start = time.perf_counter()
        conn.request("GET", "/", headers={"Host": host})
        resp = conn.getresponse()
        resp.read()
        out.append((time.perf_counter() - start) * 1000)
    conn.close()
    return out


async def register_bulk(pool, count: int, first: int) -> None:
    """`count` extra live route rows (no runtimes behind them), as router-config writes them."""
    rows = []
    for i in range(count):
        n = tenant_names(f"bulk{first + i}")
        rows.append((n.tenant_id, n.route_id, [n.host], f"127.0.0.1:{1 + i % 60000}", n.bucket))
    await pool.executemany(
        "INSERT INTO routes (tenant_id, route_id, hosts, upstream, bucket) VALUES ($1, $2, $3, $4, $5) "
        "ON CONFLICT (tenant_id) DO NOTHING", rows)
    await pool.execute("SELECT pg_notify('hostplane_routes', 'bulk')")


async def run(running, args: argparse.Namespace) -> dict:
    state = load_state(running.settings.home_dir)
    for name in ("router-config", "runtime-agent"):
        process.stop(state.components.pop(name).pid)
    save_state(running.settings.home_dir, state)
    settings, edge = running.settings, running.settings.edge_port
    pool = await asyncpg.create_pool(running.conn.control_dsn, min_size=1, max_size=4)
    deps = await open_router(settings, running.conn.control_dsn)
    ports = registry.port_range(settings)
    servers, result = [], {}
    try:
        async with pool.acquire() as conn:
            await registry.ensure_schema(conn)

            async def routed(tenant: str, *, serve_it: bool) -> float:
                port = await registry.register_service(conn, tenant, None, ports=ports)
                if serve_it:
                    servers.append(serve(port))
                start = time.perf_counter()
                await on_tenant_provisioned(provisioned(tenant), deps)
                return (time.perf_counter() - start) * 1000

            bystanders = [f"by{i}" for i in range(args.bystanders)]
            for t in bystanders:
                await routed(t, serve_it=True)
                assert await asyncio.to_thread(until, edge, tenant_names(t).host, 200) < 10_000

            # 1. churn with keep-alive readers on every bystander
            stop, outcomes = threading.Event(), [Counter() for _ in bystanders]
            readers = [threading.Thread(target=reader, args=(edge, tenant_names(t).host, stop, o), daemon=True)
                       for t, o in zip(bystanders, outcomes)]
            for r in readers:
                r.start()
            visible_create, visible_delete = [], []
            churn_start = time.perf_counter()
            for i in range(args.churn):
                other = f"churn{i}"
                await routed(other, serve_it=True)
                visible_create.append(await asyncio.to_thread(until, edge, tenant_names(other).host, 200))
                await on_tenant_deletion_requested(deletion(other), deps)
                visible_delete.append(await asyncio.to_thread(until, edge, tenant_names(other).host, 404))
            churn_s = time.perf_counter() - churn_start
            stop.set()
            for r in readers:
                r.join(10)
            total = sum(outcomes, Counter())
            result["churn"] = {
                "bystanders": args.bystanders, "changes": 2 * args.churn, "seconds": round(churn_s, 1),
                "requests": sum(total.values()), "failed": sum(v for k, v in total.items() if k != "ok"),
                "outcomes": dict(total),
                "visible_create_ms": summary(visible_create), "visible_delete_ms": summary(visible_delete),
            }

            # 2 and 3. change cost and latency as registered routes grow
            result["scale"] = []
            probe = bystanders[0]
            registered = len(bystanders)
            for size in (50, 500, 2000):
                await register_bulk(pool, size - registered, registered)
                registered = size
                await asyncio.sleep(0.5)  # the resolver reads the table again
                create_ms, delete_ms = [], []
                for i in range(20):
                    other = f"cost{size}x{i}"
                    create_ms.append(await routed(other, serve_it=False))
                    start = time.perf_counter()
                    await on_tenant_deletion_requested(deletion(other), deps)
                    delete_ms.append((time.perf_counter() - start) * 1000)
                lat = await asyncio.to_thread(latency, edge, tenant_names(probe).host, args.requests)
                live = await pool.fetchval("SELECT count(*) FROM routes WHERE deleted_at IS NULL")
                result["scale"].append({"routes": live, "create_ms": summary(create_ms),
                                        "delete_ms": summary(delete_ms),
                                        "latency_ms": {k: round(v, 3) if isinstance(v, float) else v
                                                       for k, v in _fine(lat).items()}})
    finally:
        for s in servers:
            s.shutdown()
        await deps.aclose()
        await pool.close()
    return result


def _fine(values: list[float]) -> dict[str, float]:
    """Latency needs more than summary()'s one decimal."""
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"n": len(values), "p50": pick(0.5), "p99": pick(0.99), "max": ordered[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bystanders", type=int, default=10)
    parser.add_argument("--churn", type=int, default=100)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="hostplane-edge-churn-"))
    running = start_platform(home, "moto", runtime_ports=max(200, args.bystanders + args.churn + 10))
    try:
        result = asyncio.run(run(running, args))
    finally:
        stop_platform(running)
    console = Console()
    churn = result["churn"]
    console.print(f"churn: {churn['changes']} route changes in {churn['seconds']} s; "
                  f"{churn['requests']} bystander requests, [bold]{churn['failed']} failed[/] {churn['outcomes']}")
    console.print(f"visible at the edge after a create: {churn['visible_create_ms']} ms; "
                  f"after a delete: {churn['visible_delete_ms']} ms")
    table = Table("routes", "create p50/p95 ms", "delete p50/p95 ms", "edge latency p50/p99 ms")
    for row in result["scale"]:
        table.add_row(str(row["routes"]), f"{row['create_ms']['p50']} / {row['create_ms']['p95']}",
                      f"{row['delete_ms']['p50']} / {row['delete_ms']['p95']}",
                      f"{row['latency_ms']['p50']} / {row['latency_ms']['p99']}")
    console.print(table)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"edge-churn-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps({"args": vars(args), "host": host_platform.node(), **result}, indent=2))
    console.print(f"saved {out}")


if __name__ == "__main__":
    main()
