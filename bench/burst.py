"""Burst benchmark: N tenant creations submitted at once (default 100).

Measures the time until all are `ready`, the create→ready distribution, events lost
(every tenant must have its whole event chain — TenantRequested, TenantProvisioned,
RouteConfigured, TenantChanged, MigrationsApplied, ReleaseActivated — in the event log;
goal 0 missing) and the DLQ depth of every service at the end (goal 0).

    python bench/burst.py [--tenants 100] [--timeout 1200] [--emulator moto]

Prints a table, saves bench/results/burst-<timestamp>.json and a PNG chart beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.support.fleet import Fleet, save, summary  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
CHAIN = ("TenantRequested", "TenantProvisioned", "RouteConfigured", "TenantChanged", "MigrationsApplied",
         "ReleaseActivated")


async def missing_events(fleet: Fleet, names: list[str]) -> dict[str, list[str]]:
    missing = {}
    for name in names:
        resp = await fleet.api.get(f"/v1/tenants/{name}/events")
        body = resp.json() if resp.status_code == 200 else {}
        items = body.get("events", body) if isinstance(body, dict) else body
        seen = {e.get("event_type") or e.get("type") for e in items or []}
        gaps = [t for t in CHAIN if t not in seen]
        if gaps:
            missing[name] = gaps
    return missing


async def run(count: int, timeout: float, emulator: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="hp-burst-") as folder:
        fleet = await Fleet.start(Path(folder) / "home", emulator)
        try:
            names = [f"b{i:04d}" for i in range(count)]
            started = time.monotonic()
            refused = await fleet.create(names)
            submitted = time.monotonic() - started
            ready = await fleet.wait_settled([n for n in names if n not in refused], timeout)
            took = time.monotonic() - started
            states = await fleet.states()
            not_ready = {n: states.get(n, {}).get("state") for n in names if n not in ready}
            await asyncio.sleep(3)
            gaps = await missing_events(fleet, names)
            dlq = await fleet.dlq_depths()
        finally:
            await fleet.stop()
    return {"emulator": emulator, "tenants": count, "submitted_in_s": round(submitted, 1), "refused": refused,
            "all_ready_s": round(took, 1), "ready": len(ready), "not_ready": not_ready,
            "create_to_ready_s": summary(list(ready.values())), "ready_times_s": sorted(ready.values()),
            "tenants_missing_events": gaps, "events_lost": sum(len(v) for v in gaps.values()),
            "dlq_depth": dlq, "dlq_total": sum(dlq.values())}


def chart(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times = result["ready_times_s"]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(times, range(1, len(times) + 1), drawstyle="steps-post")
    ax.set(title=f"{result['tenants']} creations at once: tenants ready over time", xlabel="s since submission",
           ylabel="tenants ready")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=1200)
    parser.add_argument("--emulator", default="moto", choices=["moto", "localstack"])
    args = parser.parse_args()
    result = asyncio.run(run(args.tenants, args.timeout, args.emulator))
    lat = result["create_to_ready_s"]
    Console().print(
        f"[bold]burst[/]: {result['ready']}/{result['tenants']} ready, all in {result['all_ready_s']} s "
        f"(p50 {lat.get('p50')} s, p95 {lat.get('p95')} s); events lost {result['events_lost']}; "
        f"DLQ depth {result['dlq_total']} {result['dlq_depth']}")
    out = save(RESULTS, "burst", {k: v for k, v in result.items()})
    chart(result, out.with_suffix(".png"))
    print(f"saved {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
