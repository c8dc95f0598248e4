"""Replay-storm benchmark: how long another tenant's create takes while one or more
tenants have their whole history replayed over and over (docs/replay.md).

On a throwaway platform (moto, PostgreSQL, Valkey, Caddy, every service): `--storm`
tenants are each created, updated and rolled back (live version 3). Then `--bystanders`
creates of fresh tenants are timed one after another, first with the bus quiet
(baseline), then right after every storm tenant's history was replayed `--replays` times
through `POST /v1/tenants/{name}/replay` (the storm: one round at once, the others
`--gap` seconds apart while the bystanders create). Measured: each bystander's create,
from the API accepting it to `ready` (seconds); how long the storm took to drain (event
logs quiet); how many events the replays added, and whether the storm tenants' versions
and releases stayed as they were.

    python bench/replay_storm.py [--storm 2] [--replays 5] [--bystanders 3] [--label after]

Prints a table and saves bench/results/replay-storm-<timestamp>.json. To measure another
checkout (e.g. the code before a change), run this file with PYTHONPATH set to that
checkout: every platform process inherits it.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import platform as host_platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import yaml
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.support.fleet import summary  # noqa: E402
from hostplane.local.ephemeral import start_platform, stop_platform  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]
V1 = yaml.safe_load((REPO / "examples" / "tasks.yaml").read_text())


def spec(n: int) -> dict:
    out = copy.deepcopy(V1)
    if n >= 2:
        out["entities"]["task"]["fields"]["notes"] = {"type": "text"}
    return out


async def settled(api: httpx.AsyncClient, name: str, version: int, timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tenant = (await api.get(f"/v1/tenants/{name}")).json()
        if tenant.get("state") == "failed":
            raise RuntimeError(f"{name} failed: {tenant}")
        if tenant.get("state") == "ready" and tenant.get("version") == version:
            return tenant
        await asyncio.sleep(0.1)
    raise TimeoutError(f"{name} did not reach version {version} in {timeout} s")


async def event_count(api: httpx.AsyncClient, name: str) -> int:
    return len((await api.get(f"/v1/tenants/{name}/events", params={"limit": 1000})).json()["events"])


async def quiet(api: httpx.AsyncClient, names: list[str], still_s: float = 5.0, timeout: float = 900) -> float:
    """Seconds until every named event log stopped growing for `still_s`."""
    started = time.monotonic()
    last, since = None, time.monotonic()
    while time.monotonic() - started < timeout:
        counts = [await event_count(api, n) for n in names]
        if counts != last:
            last, since = counts, time.monotonic()
        elif time.monotonic() - since >= still_s:
            return since - started
        await asyncio.sleep(0.5)
    raise TimeoutError("event logs kept growing")


async def create_timed(api: httpx.AsyncClient, name: str) -> float:
    started = time.monotonic()
    answer = await api.post("/v1/tenants", json={"name": name, "app": spec(1)})
    answer.raise_for_status()
    await settled(api, name, 1)
    return time.monotonic() - started


async def history(api: httpx.AsyncClient, name: str) -> None:
    (await api.post("/v1/tenants", json={"name": name, "app": spec(1)})).raise_for_status()
    await settled(api, name, 1)
    (await api.put(f"/v1/tenants/{name}/app", json={"app": spec(2)})).raise_for_status()
    await settled(api, name, 2)
    (await api.post(f"/v1/tenants/{name}/rollback", json={"to": 1})).raise_for_status()
    await settled(api, name, 3)


async def measure(settings, args) -> dict:
    token = json.loads((settings.home_dir / "credentials.json").read_text())["api_token"]
    api = httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.api_port}", timeout=30,
                            headers={"Authorization": f"Bearer {token}"})
    async with api:
        storm = [f"storm{i}" for i in range(args.storm)]
        await asyncio.gather(*(history(api, n) for n in storm))
        await quiet(api, storm)
        before = {n: {"events": await event_count(api, n),
                      "releases": (await api.get(f"/v1/tenants/{n}/releases")).json()} for n in storm}
        baseline = [await create_timed(api, f"base{i}") for i in range(args.bystanders)]

        started = time.monotonic()
        queued = 0

        async def replay_round() -> None:
            nonlocal queued
            for n in storm:
                answer = await api.post(f"/v1/tenants/{n}/replay", json={})
                answer.raise_for_status()
                queued += answer.json()["queued"]

        async def rounds() -> None:  # the rest of the storm, `--gap` apart, while bystanders create
            for _ in range(args.replays - 1):
                await asyncio.sleep(args.gap)
                await replay_round()

        async def bystanders() -> list[float]:
            return [await create_timed(api, f"by{i}") for i in range(args.bystanders)]

        await replay_round()
        during, _ = await asyncio.gather(bystanders(), rounds())
        drained_s = time.monotonic() - started + await quiet(api, storm)
        timelines = {}
        for i in range(args.bystanders):
            log = (await api.get(f"/v1/tenants/by{i}/events", params={"limit": 100})).json()["events"]
            t0 = datetime.fromisoformat(log[0]["occurred_at"]) if log else None
            timelines[f"by{i}"] = [(e["event_type"], round((datetime.fromisoformat(e["occurred_at"]) - t0)
                                                           .total_seconds(), 2)) for e in log]
        after = {}
        for n in storm:
            tenant = (await api.get(f"/v1/tenants/{n}")).json()
            after[n] = {"version": tenant.get("version"), "state": tenant.get("state"),
                        "events": await event_count(api, n),
                        "releases_unchanged": (await api.get(f"/v1/tenants/{n}/releases")).json()
                        == before[n]["releases"]}
    return {
        "baseline_create_s": [round(v, 2) for v in baseline], "baseline": summary(baseline),
        "storm_create_s": [round(v, 2) for v in during], "storm": summary(during),
        "replayed_events_queued": queued, "storm_drained_s": round(drained_s, 1),
        "storm_tenants": {n: {"events_before": before[n]["events"], **after[n]} for n in storm},
        "bystander_timelines_s": timelines,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--storm", type=int, default=2, help="tenants whose history is replayed")
    ap.add_argument("--replays", type=int, default=5, help="replays of each storm tenant's history")
    ap.add_argument("--bystanders", type=int, default=3, help="creates timed, before and during the storm")
    ap.add_argument("--gap", type=float, default=1.0, help="seconds between replay rounds")
    ap.add_argument("--label", default="", help="what this run measures, e.g. 'before' or 'after'")
    args = ap.parse_args()
    checkout = os.environ.get("PYTHONPATH", "").split(os.pathsep)[0] or str(REPO)
    commit = subprocess.run(["git", "-C", checkout, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    home = Path(tempfile.mkdtemp(prefix="hp-replay-storm-"))
    running = start_platform(home, "moto")
    try:
        figures = asyncio.run(measure(running.settings, args))
    finally:
        stop_platform(running)
    result = {"bench": "replay-storm", "label": args.label, "commit": commit, "checkout": checkout,
              "at": datetime.now(UTC).isoformat(), "host": {"cpus": os.cpu_count(), "python": host_platform.python_version()},
              "replay_rate": os.environ.get("HOSTPLANE_REPLAY_RATE", "default"),
              "params": {"storm": args.storm, "replays": args.replays, "bystanders": args.bystanders, "gap_s": args.gap},
              "sandbox": os.environ.get("HOSTPLANE_SANDBOX", "default"), **figures}
    table = Table(title=f"Bystander create during a replay storm ({args.label or commit})")
    for col in ("", "n", "p50 s", "max s"):
        table.add_column(col)
    for key in ("baseline", "storm"):
        s = result[key]
        table.add_row(key, str(s["n"]), str(s.get("p50")), str(s.get("max")))
    Console().print(table)
    print(f"replayed events queued: {result['replayed_events_queued']}, storm drained in "
          f"{result['storm_drained_s']} s; storm tenants: {json.dumps(result['storm_tenants'])}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"replay-storm-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
