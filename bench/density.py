"""Density benchmark: how many tenants one machine hosts, and where it stops coping.

Tenants are added in steps (default 50 → 100 → 200) on one platform, each created from
examples/tasks.yaml through the API, all of a step submitted at once. Per step:
  - time until every new tenant is `ready` (provisioned, routed, built, migrated, live);
  - idle memory per tenant: its runtime (reloader + app workers), RSS and USS;
  - edge latency p50/p99 of GET /healthz on random tenants through Caddy, and errors: by 8
    clients at once (closed loop: the box at saturation), by one, and at fixed offered rates
    (`--rates`, open loop: the latency a given traffic sees);
  - machine memory used.
The knee is the first step where a tenant fails or misses the deadline, the edge errors,
or p99 exceeds --p99-limit-ms; the run stops there (the machine has stopped coping). A
step whose tenants would not fit in the memory left (measured USS per tenant) is not
attempted: that is the knee too.

    python bench/density.py [--steps 50,100,200] [--step-timeout 900] [--emulator moto]

With scale to zero (`--idle-after S --warm N`): the first N tenants are always on and are
the ones under traffic (the edge figures are theirs: goal p50 ≤ 10 ms, p99 ≤ 50 ms at
1,000 tenants with 100 under traffic), every other tenant sleeps after S seconds without
a request. After each step the run waits (up to S + 60 s) for the step's idle tenants to
fall asleep, then measures: running and sleeping runtimes, memory per running tenant,
machine memory. The memory check before a step counts the new tenants as running (they
all are, until their idle period passes).

    python bench/density.py --steps 100,250,400,550,700,850,1000 --idle-after 30 --warm 100

Prints a table, saves bench/results/density-<timestamp>.json and a PNG chart beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import psutil
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.support.fleet import Fleet, save, summary  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def _available_gb() -> float:
    return psutil.virtual_memory().available / 2**30


def _memory_needed_gb(last_step: dict, more: int) -> float:
    """What `more` tenants would take, each running (as new tenants are until they sleep),
    at the measured USS per running tenant plus 20 %."""
    mem = last_step["memory"]
    return more * mem.get("uss_mb_per_running_tenant", mem["uss_mb_per_tenant"]) * 1.2 / 1024


async def wait_asleep(fleet: Fleet, names: list[str], timeout: float) -> tuple[int, float]:
    """Until every one of `names` shows runtime asleep (or `timeout`): how many did, how long."""
    t0, asleep = time.monotonic(), 0
    while time.monotonic() - t0 < timeout:
        states = await fleet.states()
        asleep = sum(1 for n in names if states.get(n, {}).get("runtime") == "asleep")
        if asleep == len(names):
            break
        await asyncio.sleep(2)
    return asleep, round(time.monotonic() - t0, 1)


async def run(steps: list[int], step_timeout: float, emulator: str, p99_limit_ms: float,
              idle_after: int | None = None, warm: int = 0, max_seconds: float = 5400,
              rates: tuple[float, ...] = (), rate_seconds: float = 20) -> dict:
    rows: list[dict] = []
    began = time.monotonic()
    knee = None
    with tempfile.TemporaryDirectory(prefix="hp-density-") as folder:
        fleet = await Fleet.start(Path(folder) / "home", emulator)
        try:
            live: list[str] = []
            for target in steps:
                if time.monotonic() - began > max_seconds:
                    knee = {"tenants": target, "reasons": [f"not attempted: the run's {max_seconds:.0f} s are spent"]}
                    break
                if rows and (need := _memory_needed_gb(rows[-1], target - len(live))) > _available_gb() * 0.9:
                    knee = {"tenants": target, "reasons": [
                        f"memory: {target - len(live)} more tenants need ~{need:.1f} GB, "
                        f"{_available_gb():.1f} GB available (not attempted: the machine would swap or kill)"]}
                    break
                names = [f"d{i:04d}" for i in range(len(live), target)]
                idle = None if idle_after is None else {
                    n: 0 if int(n[1:]) < warm else idle_after for n in names}
                started = time.monotonic()
                refused = await fleet.create(names, idle_after_s=idle)
                ready = await fleet.wait_settled([n for n in names if n not in refused], step_timeout)
                took = time.monotonic() - started
                live += list(ready)
                sleeping = None
                if idle_after is not None:
                    sleepers = [n for n in live if int(n[1:]) >= warm]
                    fell, waited = await wait_asleep(fleet, sleepers, idle_after + 60)
                    sleeping = {"expected": len(sleepers), "asleep": fell, "waited_s": waited}
                else:
                    await asyncio.sleep(5)  # let start-up settle before measuring idle memory
                memory = fleet.runtime_memory()
                traffic = [n for n in live if int(n[1:]) < warm] if idle_after is not None and warm else live
                await fleet.edge_latency(traffic, requests=len(traffic))  # warm-up: first requests open DB pools
                edge = await fleet.edge_latency(traffic, requests=max(2000, 4 * len(traffic)))
                # one request at a time: the route and the app without the queueing of 8 clients on 2 cores
                edge["serial"] = await fleet.edge_latency(traffic, requests=500, concurrency=1)
                # open loop: the latency a given traffic sees (the 8 clients above saturate the cores)
                edge["at_rate"] = [await fleet.edge_at_rate(traffic, rate, rate_seconds) for rate in rates]
                row = {
                    "tenants": target, "created": len(names), "ready": len(ready), "refused": len(refused),
                    "all_ready_s": round(took, 1), "create_to_ready_s": summary(list(ready.values())),
                    "memory": memory, "edge": edge, "under_traffic": len(traffic), "sleeping": sleeping,
                    "machine_used_gb": round((psutil.virtual_memory().total - psutil.virtual_memory().available) / 2**30, 1),
                }
                rows.append(row)
                print(f"step {target}: {len(ready)}/{len(names)} ready in {took:.0f} s, "
                      f"edge p99 {edge['latency_ms'].get('p99')} ms, {edge['errors']} errors; CPU ms per request "
                      f"{edge['cpu_ms_per_request']} ({edge['cpu_busy']:.0%} of the cores busy)", flush=True)
                reasons = []
                if len(ready) < len(names):
                    reasons.append(f"{len(names) - len(ready)} of {len(names)} new tenants not ready in {step_timeout:.0f} s")
                if edge["errors"]:
                    reasons.append(f"{edge['errors']} edge errors")
                if edge["latency_ms"].get("p99", 0) > p99_limit_ms:
                    reasons.append(f"edge p99 {edge['latency_ms']['p99']} ms > {p99_limit_ms:.0f} ms")
                if reasons:
                    knee = {"tenants": target, "reasons": reasons}
                    break
        finally:
            await fleet.stop()
    return {"emulator": emulator, "steps": rows, "knee": knee}


def chart(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = result["steps"]
    n = [s["tenants"] for s in steps]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    axes[0].plot(n, [s["all_ready_s"] for s in steps], marker="o")
    axes[0].set(title="time until the step's tenants are ready", xlabel="tenants", ylabel="s")
    axes[1].plot(n, [s["memory"]["rss_mb_per_tenant"] for s in steps], marker="o", label="RSS")
    axes[1].plot(n, [s["memory"]["uss_mb_per_tenant"] for s in steps], marker="o", label="USS")
    axes[1].set(title="idle memory per tenant", xlabel="tenants", ylabel="MB")
    axes[1].legend()
    axes[2].plot(n, [s["edge"]["latency_ms"].get("p50") for s in steps], marker="o", label="p50, 8 clients")
    axes[2].plot(n, [s["edge"]["latency_ms"].get("p99") for s in steps], marker="o", label="p99, 8 clients")
    rates = [r["offered_per_s"] for r in steps[0]["edge"].get("at_rate", [])] if steps else []
    for i, rate in enumerate(rates):
        for q, style in (("p50", "--"), ("p99", ":")):
            axes[2].plot(n, [s["edge"]["at_rate"][i]["latency_ms"].get(q) for s in steps], linestyle=style,
                         marker=".", label=f"{q} at {rate:.0f}/s")
    axes[2].set(title="edge latency, random tenant", xlabel="tenants", ylabel="ms")
    axes[2].legend()
    if result.get("knee"):
        fig.suptitle(f"knee at {result['knee']['tenants']} tenants: {'; '.join(result['knee']['reasons'])}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="50,100,200")
    parser.add_argument("--step-timeout", type=float, default=900)
    parser.add_argument("--emulator", default="moto", choices=["moto", "localstack"])
    parser.add_argument("--p99-limit-ms", type=float, default=1000)
    parser.add_argument("--idle-after", type=int, help="scale to zero: tenants sleep after this many idle seconds")
    parser.add_argument("--warm", type=int, default=0, help="with --idle-after: the first N are always on, under traffic")
    parser.add_argument("--max-seconds", type=float, default=5400, help="no step starts after this long")
    parser.add_argument("--rates", default="100,200",
                        help="open-loop edge traffic per step, requests/s (Poisson arrivals); empty: none")
    parser.add_argument("--rate-seconds", type=float, default=20, help="how long each rate is offered")
    args = parser.parse_args()
    rates = tuple(float(r) for r in args.rates.split(",") if r)
    result = asyncio.run(run([int(s) for s in args.steps.split(",")], args.step_timeout, args.emulator,
                             args.p99_limit_ms, args.idle_after, args.warm, args.max_seconds, rates, args.rate_seconds))
    result["options"] = vars(args)
    table = Table(title=f"density on one machine ({args.emulator})")
    for col in ("tenants", "ready/new", "all ready s", "create→ready p50 s", "running/asleep", "USS MB/running",
                "USS MB/tenant", "traffic on", "edge p50 ms", "edge p99 ms", "1 client p50/p99", "errors",
                "at rate p50/p99", "machine GB"):
        table.add_column(col, justify="right")
    for s in result["steps"]:
        lat, mem = s["edge"]["latency_ms"], s["memory"]
        table.add_row(str(s["tenants"]), f"{s['ready']}/{s['created']}", str(s["all_ready_s"]),
                      str(s["create_to_ready_s"].get("p50")), f"{mem.get('running')}/{mem.get('asleep')}",
                      str(mem.get("uss_mb_per_running_tenant")), str(mem["uss_mb_per_tenant"]),
                      str(s.get("under_traffic", s["tenants"])), str(lat.get("p50")), str(lat.get("p99")),
                      "/".join(str(s["edge"].get("serial", {}).get("latency_ms", {}).get(q)) for q in ("p50", "p99")),
                      str(s["edge"]["errors"]),
                      " ".join(f"{r['offered_per_s']:.0f}/s: {r['latency_ms'].get('p50')}/{r['latency_ms'].get('p99')}"
                               for r in s["edge"].get("at_rate", [])),
                      str(s["machine_used_gb"]))
    Console(width=160).print(table)
    print("knee:", result["knee"] or "not reached")
    out = save(RESULTS, "density", result)
    chart(result, out.with_suffix(".png"))
    print(f"saved {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
