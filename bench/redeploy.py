"""Redeploy benchmark: how fast a release goes live under load, and what it drops.

One tenant runtime (a real reloader process and real app workers on loopback) serves a
small Starlette app while a few keep-alive clients hit it back to back. N releases go
live one after another, each the way the platform does it: the release is published to
the artifact store, then `current.json` is moved. Measured per release:
  - pointer → serving: from writing current.json to the first response of the new
    version seen by any client; polled (bounded below by the poll interval: EFS gives no
    change notification), or pushed (`--push`: SIGUSR1 right after the write, what the
    runtime agent does on the migrator's notice, so the poll no longer bounds it);
  - the reloader's own swap and health timings (from its ReleaseActivated events);
  - failed requests during the whole run (goal 0);
  - idle memory of the tenant: reloader + app, RSS and USS (USS: what one more tenant
    really costs, shared libraries counted once).
Then the same through a whole platform (moto, PostgreSQL, Valkey, Caddy, every service):
a generated tenant under the same load at its edge URL, and N `hostplane tenant update`
runs (each adds a field, `--wait`), measured from starting the CLI, and from the API
accepting the update (AppUpdateRequested's time), to the first response of the new
version at the edge, and to the CLI's exit; then N `hostplane tenant rollback` runs, from
the API accepting (RollbackRequested's time) to the rolled-back version at the edge;
failed edge requests over the whole run.

    python bench/redeploy.py [--releases 20] [--clients 4] [--poll-intervals 1.0,0.25] [--push] [--no-edge]
                             [--rollbacks 10]

Prints a table and saves bench/results/redeploy-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform as host_platform
import signal
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

from tests.support.runtime_harness import Load, start_runtime  # noqa: E402
from tests.support.sample_app import SampleApp  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _memory(pid: int) -> dict[str, float]:
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    full = [p.memory_full_info() for p in procs]
    return {"processes": len(procs), "rss_mb": round(sum(m.rss for m in full) / 2**20, 1),
            "uss_mb": round(sum(m.uss for m in full) / 2**20, 1)}


async def run_case(poll_interval: float, releases: int, clients: int, push: bool = False) -> dict:
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
                if push:
                    rt.proc.send_signal(signal.SIGUSR1)
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
        "pushed": push,
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


def _stats(ms: list[float]) -> dict[str, int]:
    return {"p50": round(statistics.median(ms)), "p95": round(_percentile(ms, 0.95)), "max": round(max(ms))}


async def _cli(env: dict[str, str], *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "hostplane", *args, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 300)
    if proc.returncode:
        raise RuntimeError(f"hostplane {' '.join(args[:3])}: exit {proc.returncode}: {err.decode()[-500:]}")
    return out.decode()


def edge_case(releases: int, clients: int, rollbacks: int) -> dict:
    """`hostplane tenant update` → the new version serving at the edge, under load."""
    from hostplane.local.ephemeral import start_platform, stop_platform

    with tempfile.TemporaryDirectory(prefix="hostplane-redeploy-edge-") as folder:
        running = start_platform(Path(folder) / "home", "moto")  # synchronous: outside the event loop
        try:
            return asyncio.run(_edge_updates(running, Path(folder) / "app.yaml", releases, clients, rollbacks))
        finally:
            stop_platform(running)


async def _edge_updates(running, path: Path, releases: int, clients: int, rollbacks: int) -> dict:
    import httpx
    import yaml

    tenant = "bench-edge"
    spec = yaml.safe_load((Path(__file__).resolve().parents[1] / "examples" / "tasks.yaml").read_text())
    spec.pop("static", None)
    env = running.env()
    settings = running.settings
    token = json.loads((settings.home_dir / "credentials.json").read_text())["api_token"]
    api = httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.api_port}", timeout=30,
                            headers={"Authorization": f"Bearer {token}"})
    try:
        path.write_text(yaml.safe_dump(spec))
        await _cli(env, "tenant", "create", tenant, "--app", str(path), "--wait")
        load = Load(f"http://127.0.0.1:{settings.edge_port}", clients=clients, path="/healthz",
                    headers={"Host": f"{tenant}.localhost"}).start()
        from_cli, from_api, wait_done, rollback_from_api = [], [], [], []
        stages: dict[str, list[float]] = {}
        for version in range(2, releases + 2):
            spec["entities"]["task"]["fields"][f"extra{version}"] = {"type": "integer"}
            path.write_text(yaml.safe_dump(spec))
            started = time.time()
            answer = json.loads(await _cli(env, "tenant", "update", tenant, "--app", str(path), "--wait", "--json"))
            wait_done.append((time.time() - started) * 1000)
            await _served(load, version)
            accepted = await _accepted(api, tenant, "AppUpdateRequested", answer)
            from_cli.append((load.first_seen[version] - started) * 1000)
            from_api.append((load.first_seen[version] - accepted) * 1000)
            for stage, at in (await _stage_times(api, tenant, answer)).items():
                stages.setdefault(stage, []).append((at - accepted) * 1000)
            stages.setdefault("edge: first response", []).append((load.first_seen[version] - accepted) * 1000)
        # Rollbacks: each to the release before the live one (a new version, the old bytes).
        for version in range(releases + 2, releases + 2 + rollbacks):
            started = time.time()
            answer = json.loads(await _cli(env, "tenant", "rollback", tenant, "--wait", "--json"))
            await _served(load, version)
            accepted = await _accepted(api, tenant, "RollbackRequested", answer)
            rollback_from_api.append((load.first_seen[version] - accepted) * 1000)
        await load.stop()
    finally:
        await api.aclose()
    return {"releases": releases, "clients": clients, "requests_ok": load.ok,
            "requests_failed": len(load.failures), "failures": load.failures[:10],
            "cli_update_to_serving_ms": _stats(from_cli), "api_accepted_to_serving_ms": _stats(from_api),
            "cli_update_wait_exit_ms": _stats(wait_done), "rollbacks": rollbacks,
            "stage_after_api_accepted_ms": {stage: _stats(ms) for stage, ms in stages.items()},
            "rollback_api_accepted_to_serving_ms": _stats(rollback_from_api) if rollback_from_api else None}


async def _served(load: Load, version: int) -> None:
    deadline = time.monotonic() + 60
    while not load.all_saw(version):
        if time.monotonic() > deadline:
            raise RuntimeError(f"version {version} never served at the edge")
        await asyncio.sleep(0.02)


async def _accepted(api, tenant: str, event_type: str, answer: dict) -> float:
    """When the API accepted the request: its command event's time."""
    events = (await api.get(f"/v1/tenants/{tenant}/events", params={"type": event_type})).json()
    return next(datetime.fromisoformat(e["occurred_at"]).timestamp()
                for e in events["events"] if e["correlation_id"] == answer["request"]["correlation_id"])


async def _stage_times(api, tenant: str, answer: dict) -> dict[str, float]:
    """When each stage's fact of this request was recorded (its occurred_at): where the time goes."""
    corr = answer["request"]["correlation_id"]
    events = (await api.get(f"/v1/tenants/{tenant}/events", params={"limit": 50})).json()["events"]
    return {f"{e['producer']}: {e['event_type']}": datetime.fromisoformat(e["occurred_at"]).timestamp()
            for e in events if e["correlation_id"] == corr and not e["event_type"].endswith("Requested")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--releases", type=int, default=20)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--poll-intervals", default="1.0,0.25")
    parser.add_argument("--push", action="store_true", help="each poll interval also with a push (SIGUSR1)")
    parser.add_argument("--no-edge", action="store_true", help="skip the whole-platform case")
    parser.add_argument("--rollbacks", type=int, default=10, help="rollbacks after the updates (whole platform)")
    args = parser.parse_args()
    polls = [float(p) for p in args.poll_intervals.split(",") if p]  # "" = the edge case only
    cases = [(poll, push) for poll in polls for push in ((False, True) if args.push else (False,))]
    results = [asyncio.run(run_case(poll, args.releases, args.clients, push)) for poll, push in cases]
    edge = None if args.no_edge else edge_case(args.releases, args.clients, args.rollbacks)
    table = Table(title=f"redeploy: {args.releases} releases under {args.clients} clients, one tenant")
    for col in ("poll s", "pushed", "pointer→serving p50 ms", "p95 ms", "swap p50 ms", "health p50 ms", "failed / ok",
                "idle RSS MB", "idle USS MB"):
        table.add_column(col, justify="right")
    for r in results:
        lat, mem = r["pointer_to_serving_ms"], r["idle_memory"]
        table.add_row(str(r["poll_interval_s"]), "yes" if r.get("pushed") else "no", str(lat["p50"]), str(lat["p95"]), str(r["reloader_swap_ms"]["p50"]),
                      str(r["health_ms"]["p50"]), f"{r['requests_failed']} / {r['requests_ok']}",
                      f"{mem['rss_mb']} ({mem['processes']} proc)", str(mem["uss_mb"]))
    Console(width=140).print(table)
    if edge:
        table = Table(title=f"tenant update → new version at the edge: {args.releases} updates under "
                            f"{args.clients} clients (whole platform, moto, poll 1 s, pushed by the agent)")
        for col in ("from", "p50 ms", "p95 ms", "max ms"):
            table.add_column(col, justify="right")
        for key, label in (("cli_update_to_serving_ms", "starting `hostplane tenant update --wait`"),
                           ("api_accepted_to_serving_ms", "the API accepting it"),
                           ("cli_update_wait_exit_ms", "start to exit of `update --wait`"),
                           ("rollback_api_accepted_to_serving_ms", "rollback: the API accepting it")):
            if edge.get(key):
                table.add_row(label, *(str(edge[key][q]) for q in ("p50", "p95", "max")))
        Console(width=140).print(table)
        table = Table(title="where an update's time goes: each stage's fact, after the API accepted it")
        for col in ("stage", "p50 ms", "p95 ms", "max ms"):
            table.add_column(col, justify="right")
        for stage, st in sorted(edge["stage_after_api_accepted_ms"].items(), key=lambda kv: kv[1]["p50"]):
            table.add_row(stage, *(str(st[q]) for q in ("p50", "p95", "max")))
        Console(width=140).print(table)
        print(f"edge requests failed / ok during the updates: {edge['requests_failed']} / {edge['requests_ok']}")
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"redeploy-{stamp}.json"
    out.write_text(json.dumps({"at": stamp, "machine": host_platform.platform(), "cpus": os.cpu_count(),
                               "results": results, "edge": edge}, indent=2) + "\n")
    print(f"saved {out}")


if __name__ == "__main__":
    main()
