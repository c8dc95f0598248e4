"""Provisioning benchmark: time from `tenant create` (the API call the CLI makes) to the
tenant's RouteConfigured, p50/p95, for tenants created one after another and for a burst
created at once.

A throwaway platform runs every installed service (provisioner, router-config, the
runtime agent, and the builder/migrator when present: they compete for the same CPUs, as
they would). Times come from the event log: RouteConfigured's `occurred_at` minus the
moment the create call started (same clock); TenantProvisioned splits it into
provisioning and routing.

    python bench/provision.py [--sequential 20] [--burst 50] [--timeout 600]

Prints a table and saves bench/results/provision-<timestamp>.json.
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

import asyncpg
import httpx
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hostplane.local.ephemeral import RunningPlatform, start_platform, stop_platform  # noqa: E402
from core.state import CREDENTIALS_FILE  # noqa: E402
from core.logging import configure_logging  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SPEC = (Path(__file__).resolve().parents[1] / "examples" / "tasks.yaml").read_text()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _summary(values: list[float]) -> dict[str, float]:
    return {"p50": round(statistics.median(values)), "p95": round(_percentile(values, 0.95)),
            "max": round(max(values)), "n": len(values)}


class Bench:
    def __init__(self, running: RunningPlatform, timeout: float) -> None:
        token = json.loads((running.settings.home_dir / CREDENTIALS_FILE).read_text())["api_token"]
        self.api = httpx.AsyncClient(base_url=f"http://127.0.0.1:{running.settings.api_port}", timeout=60,
                                     headers={"Authorization": f"Bearer {token}", "X-Hostplane-Actor": "bench"})
        self.dsn = running.conn.control_dsn
        self.timeout = timeout

    async def create(self, name: str) -> float:
        started = time.time()
        resp = await self.api.post("/v1/tenants", json={"name": name, "app": SPEC})
        if resp.status_code != 202:
            raise RuntimeError(f"create {name}: HTTP {resp.status_code} {resp.text[:200]}")
        return started

    async def wait_routed(self, names: list[str]) -> dict[str, dict[str, float]]:
        """Per tenant: epoch seconds of TenantProvisioned and RouteConfigured (from the event log)."""
        conn = await asyncpg.connect(self.dsn)
        try:
            deadline = time.monotonic() + self.timeout
            while True:
                rows = await conn.fetch(
                    "SELECT tenant_id, event_type, min(occurred_at) AS at FROM outbox WHERE tenant_id = ANY($1) "
                    "AND event_type IN ('TenantProvisioned', 'RouteConfigured', 'ProvisioningFailed') "
                    "GROUP BY tenant_id, event_type", names)
                seen: dict[str, dict[str, float]] = {}
                for r in rows:
                    seen.setdefault(r["tenant_id"], {})[r["event_type"]] = r["at"].timestamp()
                failed = [t for t, e in seen.items() if "ProvisioningFailed" in e]
                if failed:
                    raise RuntimeError(f"provisioning failed for {failed}")
                if all("RouteConfigured" in seen.get(t, {}) for t in names):
                    return seen
                if time.monotonic() > deadline:
                    missing = [t for t in names if "RouteConfigured" not in seen.get(t, {})]
                    raise TimeoutError(f"{len(missing)} tenants not routed after {self.timeout}s: {missing[:5]}")
                await asyncio.sleep(0.05)
        finally:
            await conn.close()

    async def sequential(self, n: int) -> dict:
        totals, provision, route = [], [], []
        for i in range(n):
            name = f"seq{i:03d}"
            started = await self.create(name)
            at = (await self.wait_routed([name]))[name]
            totals.append((at["RouteConfigured"] - started) * 1000)
            provision.append((at["TenantProvisioned"] - started) * 1000)
            route.append((at["RouteConfigured"] - at["TenantProvisioned"]) * 1000)
        return {"case": f"{n} sequential", "create_to_route_ms": _summary(totals),
                "create_to_provisioned_ms": _summary(provision), "provisioned_to_route_ms": _summary(route)}

    async def burst(self, n: int) -> dict:
        names = [f"burst{i:03d}" for i in range(n)]
        t0 = time.time()
        started = dict(zip(names, await asyncio.gather(*(self.create(name) for name in names)), strict=True))
        seen = await self.wait_routed(names)
        totals = [(seen[t]["RouteConfigured"] - started[t]) * 1000 for t in names]
        route = [(seen[t]["RouteConfigured"] - seen[t]["TenantProvisioned"]) * 1000 for t in names]
        provision = [(seen[t]["TenantProvisioned"] - started[t]) * 1000 for t in names]
        last = max(seen[t]["RouteConfigured"] for t in names)
        return {"case": f"{n} at once", "create_to_route_ms": _summary(totals),
                "create_to_provisioned_ms": _summary(provision), "provisioned_to_route_ms": _summary(route),
                "all_routed_after_s": round(last - t0, 1)}


async def run(args: argparse.Namespace) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="hp-bench-prov-") as folder:
        running = await asyncio.to_thread(start_platform, Path(folder) / "home", "moto")
        bench = Bench(running, args.timeout)
        try:
            return [await bench.sequential(args.sequential), await bench.burst(args.burst)]
        finally:
            await bench.api.aclose()
            await asyncio.to_thread(stop_platform, running)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequential", type=int, default=20)
    parser.add_argument("--burst", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    configure_logging(json_output=False)
    results = asyncio.run(run(args))
    table = Table(title="tenant create → RouteConfigured (ms)")
    for col in ("case", "p50", "p95", "max", "create→provisioned p50", "provisioned→route p50", "all routed (s)"):
        table.add_column(col, justify="right")
    for r in results:
        total = r["create_to_route_ms"]
        table.add_row(r["case"], str(total["p50"]), str(total["p95"]), str(total["max"]),
                      str(r["create_to_provisioned_ms"]["p50"]), str(r["provisioned_to_route_ms"]["p50"]),
                      str(r.get("all_routed_after_s", "")))
    Console(width=140).print(table)
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"provision-{stamp}.json"
    services = sorted(p.name for p in (Path(__file__).resolve().parents[1] / "services").iterdir()
                      if (p / "main.py").exists())
    out.write_text(json.dumps({"at": stamp, "machine": host_platform.platform(), "cpus": os.cpu_count(),
                               "services_running": services, "results": results}, indent=2) + "\n")
    print(f"saved {out}")


if __name__ == "__main__":
    main()
