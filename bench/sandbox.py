"""Sandbox benchmark: what the per-tenant sandbox costs (reloader.sandbox).

The real runtime agent starts N tenants (default 10) serving a small sample app, once with
HOSTPLANE_SANDBOX=off and once sandboxed (bwrap, setpriv, cgroups). Per mode:
  - start to healthy: from the agent's first round to each tenant's /runtime/healthz
    reporting its app serving (p50, max) and until all are;
  - idle memory per tenant after it settles: RSS and USS of everything the tenant runs
    (the agent's child and all its descendants: the reloader and its app worker, plus the
    sandbox's shell and two bwrap processes).
The desired services are given to the agent directly (no database, no bus): this measures
the runtime alone. Needs root, bwrap and cgroup v1 for the sandboxed half.

    python bench/sandbox.py [--tenants 10] [--rounds 3] [--timeout 120]

Prints a table and saves bench/results/sandbox-<timestamp>.json.
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

from artifacts.store import ArtifactStore  # noqa: E402
from core.ports import free_port  # noqa: E402
from hostplane.local.agent.agent import Agent  # noqa: E402
from reloader import sandbox  # noqa: E402
from services.resources.registry import DesiredService  # noqa: E402
from tests.support.sample_app import SampleApp  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SETTLE_S = 5.0


class FixedDesired(Agent):
    wanted: list[DesiredService] = []

    async def read_desired(self) -> list[DesiredService]:
        return list(self.wanted)


def tenant_memory(pid: int) -> tuple[int, int, int]:
    """RSS, USS and process count of everything one tenant runs."""
    rss = uss = n = 0
    try:
        root = psutil.Process(pid)
        for proc in (root, *root.children(recursive=True)):
            with_uss = proc.memory_full_info()
            rss, uss, n = rss + with_uss.rss, uss + with_uss.uss, n + 1
    except psutil.Error:
        pass
    return rss, uss, n


async def measure(mode: sandbox.Decision, tenants: int, timeout: float) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"hp-sandbox-{mode.to_json()['mode']}-") as folder:
        home = Path(folder) / "home"
        (home / "logs").mkdir(parents=True)
        store = ArtifactStore(home / "artifacts")
        names = [f"s{i:03d}" for i in range(tenants)]
        for name in names:
            store.publish_release(name, 1, SampleApp(version=1).zipapp())
            store.set_current(name, 1)
        agent = FixedDesired(home, "postgresql://unused", home / "artifacts", interval=0.2, grace=3, events="none",
                             isolation=mode)
        agent.wanted = [DesiredService(n, "running", None, 256, datetime(2026, 1, 1, tzinfo=UTC), free_port())
                        for n in names]
        started = time.monotonic()
        running = asyncio.create_task(agent.run())
        healthy_at: dict[str, float] = {}
        try:
            while len(healthy_at) < tenants and time.monotonic() - started < timeout:
                await asyncio.sleep(0.1)
                for name, rec in agent.state.tenants.items():
                    if rec.healthy and name not in healthy_at:
                        healthy_at[name] = time.monotonic() - started
            await asyncio.sleep(SETTLE_S)
            samples = [tenant_memory(rec.pid) for rec in agent.state.tenants.values() if rec.pid]
        finally:
            agent.stop_requested.set()
            await asyncio.wait_for(running, 120)
    times = sorted(healthy_at.values())
    n = max(len(samples), 1)
    return {
        "mode": mode.to_json(), "tenants": tenants, "healthy": len(times),
        "start_to_healthy_s": {"p50": round(statistics.median(times), 2) if times else None,
                               "max": round(max(times), 2) if times else None},
        "rss_mb_per_tenant": round(sum(s[0] for s in samples) / n / 2**20, 1),
        "uss_mb_per_tenant": round(sum(s[1] for s in samples) / n / 2**20, 1),
        "processes_per_tenant": round(sum(s[2] for s in samples) / n, 1),
    }


def save(payload: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"sandbox-{stamp}.json"
    meta = {"at": stamp, "machine": host_platform.platform(), "cpus": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30)}
    out.write_text(json.dumps(meta | payload, indent=2) + "\n")
    return out


async def main_async(args: argparse.Namespace) -> int:
    why_not = sandbox.unavailable_reason()
    modes = [sandbox.Decision("off", False, "HOSTPLANE_SANDBOX=off")]
    if why_not is None:
        modes.append(sandbox.Decision("required", True))
    else:
        print(f"sandboxed half skipped: {why_not}", file=sys.stderr)
    # Alternated, several rounds: other work on the machine shifts start times by seconds
    rows = [await measure(mode, args.tenants, args.timeout) for _ in range(args.rounds) for mode in modes]
    table = Table(title=f"per-tenant cost of the sandbox, {args.tenants} idle tenants (sample app, 1 worker each)")
    for col in ("sandbox", "healthy", "start→healthy p50 s", "max s", "RSS MB/tenant", "USS MB/tenant",
                "processes/tenant"):
        table.add_column(col, justify="right")
    for row in rows:
        table.add_row(row["mode"]["mode"], f"{row['healthy']}/{row['tenants']}",
                      str(row["start_to_healthy_s"]["p50"]), str(row["start_to_healthy_s"]["max"]),
                      str(row["rss_mb_per_tenant"]), str(row["uss_mb_per_tenant"]), str(row["processes_per_tenant"]))
    medians = {}
    for mode in modes:
        mine = [r for r in rows if r["mode"] == mode.to_json()]
        medians[mode.to_json()["mode"]] = {
            key: statistics.median(r[key] for r in mine) for key in ("rss_mb_per_tenant", "uss_mb_per_tenant")
        } | {"start_to_healthy_p50_s": statistics.median(r["start_to_healthy_s"]["p50"] or 0 for r in mine)}
        m = medians[mode.to_json()["mode"]]
        table.add_row(f"median {mode.to_json()['mode']}", "", str(round(m["start_to_healthy_p50_s"], 2)), "",
                      str(m["rss_mb_per_tenant"]), str(m["uss_mb_per_tenant"]), "", style="bold")
    Console().print(table)
    print(f"saved {save({'rows': rows, 'medians': medians, 'load_average': os.getloadavg()})}")
    return 0 if all(r["healthy"] == r["tenants"] for r in rows) else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tenants", type=int, default=10)
    p.add_argument("--timeout", type=float, default=120.0, help="seconds for all tenants to be healthy, per mode")
    p.add_argument("--rounds", type=int, default=3, help="runs of each mode, alternated")
    return asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
