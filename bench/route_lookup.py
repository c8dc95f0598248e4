"""Route lookup benchmark: the route resolver's CPU per lookup, as the edge asks.

The resolver (services/router_config/resolver.py) runs alone in a child process with
`--routes` live routes loaded. The parent asks it `--lookups` SRV questions for the hosts
of those routes, in random order, each on a TCP connection of its own as Caddy's resolver
does (Go opens one per question). Measured: the child's CPU per lookup (user + system) and
the client's latency p50 / p99; with the cache of positive answers (`RouteResolver.reply`,
since stop 27) and without it (MAX_CACHED = 0: every question parsed and answered).

    python bench/route_lookup.py [--routes 100,1000] [--lookups 5000]

Prints a table and saves bench/results/route-lookup-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import random
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import dns.message
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.support.fleet import save  # noqa: E402
from contracts import edge as edge_names  # noqa: E402
from core.ports import free_port  # noqa: E402

RESULTS = REPO / "bench" / "results"
CHILD = """
import asyncio, sys
from contracts.tenant import tenant_names
from services.router_config import resolver as r
from services.router_config.routes import Route
r.MAX_CACHED = int(sys.argv[3])
async def main():
    res = r.RouteResolver(edge=r.Address("127.0.0.1", 8480), emulator=r.Address("127.0.0.1", 4580))
    routes = []
    for i in range(int(sys.argv[2])):
        n = tenant_names(f"bench{i:04d}")
        routes.append(Route(n.tenant_id, n.route_id, (n.host,), f"127.0.0.1:{10000 + i}", n.bucket))
    res.load(routes)
    await res.serve("127.0.0.1", int(sys.argv[1]))
    print("ready", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def ask(port: int, query: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(struct.pack("!H", len(query)) + query)
        size = struct.unpack("!H", conn.recv(2, socket.MSG_WAITALL))[0]
        return conn.recv(size, socket.MSG_WAITALL)


def run(routes: int, lookups: int, cache: int) -> dict:
    port = free_port()
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(port), str(routes), str(cache)], cwd=REPO,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        proc = psutil.Process(child.pid)
        queries = [dns.message.make_query(edge_names.app_name(f"bench{random.randrange(routes):04d}.localhost"),
                                          "SRV").to_wire() for _ in range(lookups)]
        for q in queries[:50]:  # warm
            ask(port, q)
        before = sum(proc.cpu_times()[:2])
        latencies = []
        for q in queries:
            t0 = time.perf_counter()
            reply = ask(port, q)
            latencies.append((time.perf_counter() - t0) * 1000)
            assert reply[6:8] != b"\0\0", "a live route went unanswered"
        cpu_ms = (sum(proc.cpu_times()[:2]) - before) * 1000
    finally:
        child.kill()
        child.wait()
    latencies.sort()
    return {"routes": routes, "lookups": lookups, "cache": bool(cache),
            "resolver_cpu_ms_per_lookup": round(cpu_ms / lookups, 3),
            "p50_ms": round(latencies[len(latencies) // 2], 3), "p99_ms": round(latencies[int(len(latencies) * 0.99)], 3)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--routes", default="100,1000")
    p.add_argument("--lookups", type=int, default=5000)
    args = p.parse_args()
    rows = []
    for routes in (int(n) for n in args.routes.split(",")):
        for cache in (0, 4096):
            rows.append(run(routes, args.lookups, cache))
            r = rows[-1]
            print(f"{r['routes']:5d} routes, cache {'on ' if r['cache'] else 'off'}: resolver "
                  f"{r['resolver_cpu_ms_per_lookup']:.3f} CPU-ms a lookup, client p50 {r['p50_ms']:.3f} / "
                  f"p99 {r['p99_ms']:.3f} ms", flush=True)
    out = save(RESULTS, "route-lookup", {"runs": rows})
    print(f"saved {out}")


if __name__ == "__main__":
    main()
