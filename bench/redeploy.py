"""Redeploy benchmark: how fast a release goes live under load, and what it drops.

One tenant runtime (a real reloader process and real app workers on loopback) serves a
small Starlette app while a few keep-alive clients hit it back to back. N releases go
live one after another, each the way the platform does it: the release is published to
the artifact store, then `current.json` is moved. Measured per release:
  - pointer → serving: from writing current.json to the first response of the new
    version seen by any client (bounded below by the poll interval: it is polled, EFS
    gives no change notification);
  - the reloader's own swap and health timings (from its ReleaseActivated events);
  - failed requests during the whole run (goal 0);
  - idle memory of the tenant: reloader + app, RSS and USS (USS: what one more tenant
    really costs, shared libraries counted once).
"tenant update → serving at the edge" needs the API and builder; it is not measured here.

    python bench/redeploy.py [--releases 20] [--clients 4] [--poll-intervals 1.0,0.25]

Prints a table and saves bench/results/redeploy-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform as host_platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reloader.harness import Load, start_runtime  # noqa: E402
from reloader.sample import SampleApp  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _memory(pid: int) -> dict[str, float]:
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    full = [p.memory_full_info() for p in procs]
    return {"processes": len(procs), "rss_mb": round(sum(m.rss for m in full) / 2**20, 1),
            "uss_mb": round(sum(m.uss for m in full) / 2**20, 1)}


async def run_case(poll_interval: float, releases: int, clients: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="hostplane-redeploy-") as folder:
        # production timings except the poll interval under test
        rt = start_runtime(Path(folder) / "rt", poll_interval=poll_interval, start_timeout=15, health_timeout=10,
                           grace=10, probation=3, verify_retry_for=5, health_interval=2)
        try:
            rt.publish(SampleApp(version=1))
            await rt.async_wait_for(lambda: rt.serving_version() == 1, 30, "release 1")
            load = Load(rt.url, clients=clients).start()
            await rt.async_wait_for(lambda: load.all_saw(1), 10, "clients on release 1")
            latencies = []
            for version in range(2, releases + 2):
                zipapp = SampleApp(version=version).zipapp()
                await asyncio.to_thread(rt.store.publish_release, rt.tenant, version, zipapp)
                await asyncio.sleep(poll_interval * (version % 7) / 7)  # land at varied points of the poll cycle
                written = time.time()
                await asyncio.to_thread(rt.store.set_current, rt.tenant, version)
                await rt.async_wait_for(lambda v=version: load.all_saw(v), 30, f"clients on release {version}")
                latencies.append((load.first_seen[version] - written) * 1000)
            requests_ok = load.ok
            await load.stop()
            await asyncio.sleep(3.5)  # probation over: the old generation exits
            idle = _memory(rt.proc.pid)
            activated = [e["data"] for e in rt.events("ReleaseActivated")][1:]
        finally:
            rt.stop()
    swap = [a["swap_ms"] for a in activated]
    health = [a["health_ms"] for a in activated]
    return {
        "poll_interval_s": poll_interval,
        "releases": releases,
        "clients": clients,
        "requests_ok": requests_ok,
        "requests_failed": len(load.failures),
        "failures": load.failures[:10],
        "pointer_to_serving_ms": {"p50": round(statistics.median(latencies)), "p95": round(_percentile(latencies, 0.95)),
                                  "max": round(max(latencies))},
        "reloader_swap_ms": {"p50": round(statistics.median(swap)), "p95": round(_percentile(swap, 0.95))},
        "health_ms": {"p50": round(statistics.median(health)), "p95": round(_percentile(health, 0.95))},
        "idle_memory": idle,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--releases", type=int, default=20)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--poll-intervals", default="1.0,0.25")
    args = parser.parse_args()
    results = [asyncio.run(run_case(float(p), args.releases, args.clients)) for p in args.poll_intervals.split(",")]
    table = Table(title=f"redeploy: {args.releases} releases under {args.clients} clients, one tenant")
    for col in ("poll s", "pointer→serving p50 ms", "p95 ms", "swap p50 ms", "health p50 ms", "failed / ok",
                "idle RSS MB", "idle USS MB"):
        table.add_column(col, justify="right")
    for r in results:
        lat, mem = r["pointer_to_serving_ms"], r["idle_memory"]
        table.add_row(str(r["poll_interval_s"]), str(lat["p50"]), str(lat["p95"]), str(r["reloader_swap_ms"]["p50"]),
                      str(r["health_ms"]["p50"]), f"{r['requests_failed']} / {r['requests_ok']}",
                      f"{mem['rss_mb']} ({mem['processes']} proc)", str(mem["uss_mb"]))
    Console(width=140).print(table)
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"redeploy-{stamp}.json"
    out.write_text(json.dumps({"at": stamp, "machine": host_platform.platform(), "cpus": os.cpu_count(),
                               "not_measured": "tenant update → serving at the edge (needs the API and builder)",
                               "results": results}, indent=2) + "\n")
    print(f"saved {out}")


if __name__ == "__main__":
    main()
