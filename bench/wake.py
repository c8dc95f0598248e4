"""Wake benchmark: how long the first request to a sleeping (scaled-to-zero) tenant waits.

A whole platform (moto, PostgreSQL, ...) whose runtime agent is replaced by one of our own
(`python -m hostplane.local.agent`, production settings unless told), as in
tests/integration/test_scale_to_zero.py. For each number of tenants (10 and 100 by
default, ascending, the same agent and tenants: the next size adds tenants), all with a
short idle period (`--idle`) and the sample app:
  - every tenant starts, serves nothing, and sleeps (agent.json says "asleep");
  - memory of a sleeping tenant: the agent's RSS and USS with all N asleep, minus the same
    with no tenant at all (before any was registered, and again after all were removed),
    divided by N; and from the process table, the processes left for the sleeping tenants
    (goal 0) and the agent's children;
  - wake latency: a sample of tenants (`--sample`) woken one at a time, each `--rounds`
    times (GET /healthz on the tenant's app port, a new connection each time, timed from
    sending it to its 200; between rounds every sampled tenant sleeps again);
  - `--concurrent` first requests at once to one sleeping tenant: all must be 200;
  - where each wake's time goes, from the agent's and the reloader's JSON logs: the agent
    notices the connection (runtime.waking) → the agent has spawned the runtime
    (runtime.started) → the reloader runs (its runtime.started) → it has read and verified
    the release (release.seen) → the app worker is spawned (app.spawned) → the app module
    is imported (its first output line) → the worker has proved itself and accepts
    (release.live, with health_ms) → the waiting request's response.
Goals (the scale-to-zero issue): wake p50 ≤ 300 ms, p99 ≤ 1 s, 0 failed; a sleeping
tenant ≤ 1 MB, 0 processes. Each tenant's first start costs about 2 CPU-seconds, so a size
is skipped (and said) when the time left of `--max-seconds` cannot hold it.

    python bench/wake.py [--tenants 10,100] [--idle 3] [--sample 20] [--rounds 3] [--concurrent 20]
                         [--max-seconds 1200] [--agent-interval 1.0] [--keep-logs DIR]

Prints tables and saves bench/results/wake-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform as host_platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from artifacts.store import ArtifactStore  # noqa: E402
from bench.support.fleet import percentile, summary  # noqa: E402
from hostplane.local.agent import state as agent_state  # noqa: E402
from hostplane.local.ephemeral import start_platform, stop_platform  # noqa: E402
from reloader import sandbox  # noqa: E402
from services.resources.registry import deregister_service, ensure_schema, register_service  # noqa: E402
from tests.support.agent_view import processes_of, tenants  # noqa: E402
from tests.support.sample_app import SampleApp  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
START_S_PER_TENANT = 1.2  # wall seconds per first start on 2 cores (~2 CPU-seconds each), for the budget
GOALS = {"p50_ms": 300, "p99_ms": 1000, "failed": 0, "sleeping_mb": 1.0, "sleeping_processes": 0}


class OutOfTime(RuntimeError):
    pass


class Bench:
    def __init__(self, args: argparse.Namespace, home: Path, dsn: str) -> None:
        self.args, self.home, self.dsn = args, home, dsn
        self.deadline = time.monotonic() + args.max_seconds
        self.store = ArtifactStore(home / "artifacts")
        self.release = SampleApp(version=1).zipapp()
        self.ports: dict[str, int] = {}
        self.agent: subprocess.Popen[bytes] | None = None
        self.conn: asyncpg.Connection | None = None

    def left(self) -> float:
        return self.deadline - time.monotonic()

    # --- the agent ----------------------------------------------------------------------------

    def start_agent(self) -> None:
        cmd = [sys.executable, "-m", "hostplane.local.agent", "--home", str(self.home), "--dsn-from-home",
               "--interval", str(self.args.agent_interval)]
        if self.args.agent_grace is not None:
            cmd += ["--grace", str(self.args.agent_grace)]
        with open(self.home / "logs" / "agent-wake.log", "ab") as log:
            self.agent = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          start_new_session=True, cwd=REPO)

    def stop_agent(self) -> int | None:
        if self.agent is None or self.agent.poll() is not None:
            return self.agent.returncode if self.agent else None
        self.agent.send_signal(signal.SIGTERM)
        try:
            return self.agent.wait(60)
        except subprocess.TimeoutExpired:
            self.agent.kill()
            return self.agent.wait(10)

    def agent_memory(self) -> dict[str, Any]:
        proc = psutil.Process(self.agent.pid)
        info = proc.memory_full_info()
        return {"rss_mb": round(info.rss / 2**20, 2), "uss_mb": round(info.uss / 2**20, 2),
                "children": len(proc.children(recursive=True))}

    # --- waiting on agent.json ----------------------------------------------------------------

    async def until(self, check, timeout: float, what: str) -> float:
        """Seconds until `check()` (agent.json read again every 0.1 s); OutOfTime past the budget."""
        t0 = time.monotonic()
        end = min(t0 + timeout, self.deadline)
        while True:
            if await asyncio.to_thread(check):
                return time.monotonic() - t0
            if self.agent.poll() is not None:
                raise RuntimeError(f"the runtime agent exited ({self.agent.returncode}) waiting for {what}")
            if time.monotonic() > end:
                raise OutOfTime(f"{what}: not within {time.monotonic() - t0:.0f} s")
            await asyncio.sleep(0.1)

    def all_asleep(self, names: list[str]) -> bool:
        seen = tenants(self.home)
        return all(seen.get(n, {}).get("runtime") == "asleep" for n in names)

    # --- one size ------------------------------------------------------------------------------

    async def grow_to(self, n: int) -> list[str]:
        names = [f"wake{i:04d}" for i in range(n)]
        for name in names:
            if name not in self.ports:
                await asyncio.to_thread(self.store.publish_release, name, 1, self.release)
                await asyncio.to_thread(self.store.set_current, name, 1)
                self.ports[name] = await register_service(self.conn, name, None, 256, idle_after_s=self.args.idle)
        return names

    async def wake_one(self, client: httpx.AsyncClient, tenant: str) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.ports[tenant]}/healthz"
        sent, t0 = time.time(), time.perf_counter()
        try:
            resp = await client.get(url)
            ms = (time.perf_counter() - t0) * 1000
            ok = resp.status_code == 200 and resp.json().get("version") == 1
            error = None if ok else f"status {resp.status_code}: {resp.text[:120]}"
        except (httpx.HTTPError, ValueError) as exc:
            ms, ok, error = (time.perf_counter() - t0) * 1000, False, f"{type(exc).__name__}: {exc}"[:200]
        return {"tenant": tenant, "sent": sent, "done": sent + ms / 1000, "ms": round(ms, 1), "ok": ok, "error": error}

    async def run_size(self, n: int) -> dict[str, Any]:
        a = self.args
        new = max(0, n - len(self.ports))
        need = new * START_S_PER_TENANT + a.idle + 30 + a.rounds * (min(a.sample, n) * 2 + a.idle + 5) + 30
        if need > self.left():
            return {"tenants": n, "skipped": f"needs ~{need:.0f} s, {self.left():.0f} s left of --max-seconds"}
        t0 = time.monotonic()
        names = await self.grow_to(n)
        await self.until(lambda: self.all_asleep(names), new * START_S_PER_TENANT * 3 + a.idle + 120,
                         f"all {n} tenants asleep")
        all_asleep_s = time.monotonic() - t0
        await asyncio.sleep(max(2.0, 2 * a.agent_interval))  # a round or two with all of them asleep
        memory = self.agent_memory()
        procs = {t: await asyncio.to_thread(processes_of, self.home, t, self.ports[t]) for t in names}
        still = {t: p for t, p in procs.items() if p}

        k = min(a.sample, n)
        sample = [names[i * n // k] for i in range(k)]
        wakes: list[dict[str, Any]] = []
        async with httpx.AsyncClient(timeout=a.timeout, limits=httpx.Limits(max_keepalive_connections=0)) as client:
            for r in range(a.rounds):
                await self.until(lambda: self.all_asleep(sample), 60 + a.idle * 3, f"sample asleep, round {r + 1}")
                for tenant in sample:
                    wake = await self.wake_one(client, tenant)
                    wakes.append(wake | {"round": r + 1})
                    print(f"  {n} tenants, round {r + 1}: {tenant} {wake['ms']:.0f} ms"
                          f"{'' if wake['ok'] else ' FAILED ' + str(wake['error'])}", flush=True)
        # concurrent first requests to one sleeping tenant (one not sampled when there is one)
        target = next((t for t in reversed(names) if t not in sample), sample[-1])
        await self.until(lambda: self.all_asleep([target]), 60 + a.idle * 3, "the concurrency target asleep")
        async with httpx.AsyncClient(timeout=a.timeout, limits=httpx.Limits(max_connections=a.concurrent,
                                                                            max_keepalive_connections=0)) as client:
            burst = await asyncio.gather(*(self.wake_one(client, target) for _ in range(a.concurrent)))
        await self.until(lambda: self.all_asleep(names), 60 + a.idle * 3, f"all {n} asleep again")

        ok_ms = [w["ms"] for w in wakes if w["ok"]]
        return {
            "tenants": n, "started_and_asleep_s": round(all_asleep_s, 1), "new_tenants": new,
            "agent_memory_all_asleep": memory,
            "sleeping_tenant_processes": sum(len(p) for p in procs.values()), "tenants_with_processes": still,
            "sample": sample, "rounds": a.rounds,
            "wake_ms": summary(ok_ms) | {"failed": sum(not w["ok"] for w in wakes)},
            "wakes": wakes,
            "concurrent": {"tenant": target, "requests": a.concurrent, "ok": sum(w["ok"] for w in burst),
                           "ms": summary([w["ms"] for w in burst if w["ok"]]),
                           "errors": [w["error"] for w in burst if not w["ok"]][:5], "requests_detail": burst},
        }

    async def remove_all(self) -> float:
        for name in self.ports:
            await deregister_service(self.conn, name)
        return await self.until(lambda: not tenants(self.home), 120, "every tenant removed")


# --- where the time goes, from the logs ------------------------------------------------------

def _events(path: Path) -> list[dict[str, Any]]:
    out = []
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return out
    for line in lines:
        if not line.startswith("{"):
            continue
        try:
            event = json.loads(line)
            event["t"] = datetime.fromisoformat(event["timestamp"]).timestamp()
        except (ValueError, KeyError, TypeError):
            continue
        out.append(event)
    return out


PHASES = ("notice", "agent_spawn", "reloader_boot", "release_read", "worker_spawn", "app_import",
          "prove_and_accept", "first_response")


def breakdown(home: Path, wakes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each wake's milestones (ms after sending the request) from the agent's and reloader's logs."""
    agent_log = [e for p in sorted((home / "logs").glob("agent-*.log")) for e in _events(p)]
    runtime_logs: dict[str, list[dict[str, Any]]] = {}
    out = []
    for w in wakes:
        t, sent, done = w["tenant"], w["sent"], w["done"]
        if t not in runtime_logs:
            runtime_logs[t] = _events(home / "logs" / f"runtime-{t}.log")

        def first(events, name, after, *, tenant=None, where=lambda e: True):
            return next((e for e in events if e.get("event") == name and e["t"] >= after - 0.005
                         and (tenant is None or e.get("tenant_id") == tenant) and where(e)), None)

        waking = first(agent_log, "runtime.waking", sent, tenant=t)
        if waking is None or waking["t"] > done:
            out.append({"tenant": t, "sent": sent, "missing": "runtime.waking"})
            continue
        marks = {"waking": waking}
        marks["agent_started"] = first(agent_log, "runtime.started", waking["t"], tenant=t)
        rlog = runtime_logs[t]
        chain = (("reloader_started", "runtime.started", {}), ("seen", "release.seen", {}),
                 ("spawned", "app.spawned", {}),
                 ("imported", "app.output", {"where": lambda e: str(e.get("line", "")).startswith("app starting")}),
                 ("live", "release.live", {}))
        at = marks["agent_started"]["t"] if marks["agent_started"] else waking["t"]
        for key, name, kw in chain:
            marks[key] = first(rlog, name, at, **kw)
            if marks[key] is not None:
                at = marks[key]["t"]
        ms = {k: round((e["t"] - sent) * 1000, 1) if e else None for k, e in marks.items()}
        ms["done"] = round((done - sent) * 1000, 1)
        order = ["waking", "agent_started", "reloader_started", "seen", "spawned", "imported", "live", "done"]
        phases, prev = {}, 0.0
        for phase, key in zip(PHASES, order, strict=True):
            if ms[key] is None:
                phases[phase] = None
                continue
            phases[phase], prev = round(ms[key] - prev, 1), ms[key]
        live = marks["live"] or {}
        out.append({"tenant": t, "round": w.get("round"), "total_ms": w["ms"], "at_ms": ms, "phases_ms": phases,
                    "swap_ms": live.get("swap_ms"), "health_ms": live.get("health_ms")})
    return out


def phase_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    done = [r for r in rows if "phases_ms" in r]
    out = {}
    for phase in PHASES:
        values = [r["phases_ms"][phase] for r in done if r["phases_ms"].get(phase) is not None]
        out[phase] = {"p50": round(statistics.median(values), 1), "p99": round(percentile(values, 0.99), 1),
                      "n": len(values)} if values else {"n": 0}
    for key in ("swap_ms", "health_ms"):
        values = [r[key] for r in done if r.get(key) is not None]
        out[key] = {"p50": statistics.median(values), "n": len(values)} if values else {"n": 0}
    return out


# --- the run -------------------------------------------------------------------------------

def stop_platform_agent(home: Path) -> None:
    """The platform's own runtime agent goes: this benchmark runs its own (as the integration test)."""
    from core import process
    from core.state import load_state, save_state

    state = load_state(home)
    if (agent := state.components.pop("runtime-agent", None)) is not None:
        process.stop(agent.pid)
        save_state(home, state)


async def measure(args: argparse.Namespace, running) -> dict[str, Any]:
    home = running.settings.home_dir
    bench = Bench(args, home, running.conn.control_dsn)
    bench.conn = await asyncpg.connect(running.conn.control_dsn)
    sizes: list[dict[str, Any]] = []
    out: dict[str, Any] = {"sizes": sizes}
    try:
        await ensure_schema(bench.conn)
        bench.start_agent()
        await asyncio.sleep(max(3.0, 3 * args.agent_interval))  # started, a few empty rounds
        out["agent_memory_no_tenants_before"] = bench.agent_memory()
        for n in args.tenants:
            print(f"== {n} tenants ({bench.left():.0f} s of budget left)", flush=True)
            try:
                sizes.append(await bench.run_size(n))
            except OutOfTime as exc:
                sizes.append({"tenants": n, "skipped": f"out of time: {exc}"})
                break
        if bench.ports:
            bench.deadline = max(bench.deadline, time.monotonic() + 150)  # removing them is not optional
            out["removed_all_s"] = round(await bench.remove_all(), 1)
            await asyncio.sleep(max(3.0, 3 * args.agent_interval))
            out["agent_memory_no_tenants_after"] = bench.agent_memory()
        out["leftover_reloaders"] = len(agent_state.our_reloaders(f"agent:{home}"))
    finally:
        out["agent_exit"] = bench.stop_agent()
        await bench.conn.close()
        if args.keep_logs:
            shutil.copytree(home / "logs", args.keep_logs / "logs", dirs_exist_ok=True)
    for size in sizes:
        if "skipped" in size:
            continue
        rows = breakdown(home, size["wakes"])
        size["breakdown"] = rows
        size["phases_ms"] = phase_summary(rows)
        size["concurrent"]["breakdown"] = breakdown(home, size["concurrent"]["requests_detail"][:1])
        mem = size["agent_memory_all_asleep"]
        size["per_sleeping_tenant_mb"] = {
            f"vs_{when}": {k: round((mem[k] - out[f"agent_memory_no_tenants_{when}"][k]) / size["tenants"], 3)
                           for k in ("rss_mb", "uss_mb")}
            for when in ("before", "after") if f"agent_memory_no_tenants_{when}" in out}
    done = [s for s in sizes if "skipped" not in s]
    if len(done) >= 2:  # the marginal cost: what each added sleeping tenant cost the agent
        lo, hi = done[0], done[-1]
        out["marginal_mb_per_sleeping_tenant"] = {
            k: round((hi["agent_memory_all_asleep"][k] - lo["agent_memory_all_asleep"][k]) / (hi["tenants"] - lo["tenants"]), 3)
            for k in ("rss_mb", "uss_mb")}
    return out


def report(args: argparse.Namespace, out: dict[str, Any]) -> None:
    console = Console(width=160)
    table = Table(title=f"wake from asleep → 200 (sample app, idle {args.idle} s, one at a time, "
                        f"{args.rounds} rounds; goal p50 ≤ {GOALS['p50_ms']} / p99 ≤ {GOALS['p99_ms']} ms, 0 failed)")
    for col in ("tenants", "wakes", "p50 ms", "p99 ms", "max ms", "failed", f"{args.concurrent} at once",
                "MB/sleeper RSS*", "USS*", "sleeper procs", "start+sleep s"):
        table.add_column(col, justify="right")
    for s in out["sizes"]:
        if "skipped" in s:
            table.add_row(str(s["tenants"]), "skipped", s["skipped"], *[""] * 8)
            continue
        w, c = s["wake_ms"], s["concurrent"]
        per = s["per_sleeping_tenant_mb"].get("vs_before", {})
        table.add_row(str(s["tenants"]), str(w["n"] + w["failed"]), str(w.get("p50")), str(w.get("p99")),
                      str(w.get("max")), str(w["failed"]),
                      f"{c['ok']}/{c['requests']} ok, max {c['ms'].get('max')} ms",
                      str(per.get("rss_mb")), str(per.get("uss_mb")), str(s["sleeping_tenant_processes"]),
                      str(s["started_and_asleep_s"]))
    console.print(table)
    table = Table(title="where a wake's time goes (p50 ms per phase, from the agent's and reloader's logs)")
    table.add_column("tenants", justify="right")
    for phase in PHASES + ("health_ms",):
        table.add_column(phase.replace("_", " "), justify="right")
    for s in out["sizes"]:
        if "phases_ms" in s:
            table.add_row(str(s["tenants"]), *(str(s["phases_ms"][p].get("p50")) for p in PHASES + ("health_ms",)))
    console.print(table)
    mem = {k: out.get(f"agent_memory_no_tenants_{k}") for k in ("before", "after")}
    print(f"* the agent's memory with all N asleep minus before any tenant, / N. It includes what the agent loads\n"
          f"  once, at its first report (the bus publisher: aiobotocore, 17 MB of imports alone), so it overstates small N. The agent with no tenants:\n"
          f"  before {mem['before']}, after all were removed {mem['after']}; each sleeping tenant added between the\n"
          f"  first and last size: {out.get('marginal_mb_per_sleeping_tenant')} MB (the figure to compare with the goal)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tenants", default="10,100", help="sizes, ascending (1000 allowed: ~2 CPU-s per first start)")
    p.add_argument("--idle", type=int, default=3, help="each tenant's idle_after_s")
    p.add_argument("--sample", type=int, default=20, help="tenants woken per size")
    p.add_argument("--rounds", type=int, default=3, help="wakes of each sampled tenant")
    p.add_argument("--concurrent", type=int, default=20, help="first requests at once to one sleeping tenant")
    p.add_argument("--timeout", type=float, default=30.0, help="client timeout per request, s")
    p.add_argument("--agent-interval", type=float, default=1.0, help="the agent's round (production: 1)")
    p.add_argument("--agent-grace", type=float, help="the reloaders' drain budget (production: 10)")
    p.add_argument("--max-seconds", type=float, default=1200, help="budget for the sizes; one that cannot fit is skipped")
    p.add_argument("--keep-logs", type=Path, help="copy the platform's logs (agent, runtimes) here before it is purged")
    args = p.parse_args()
    args.tenants = sorted({int(n) for n in args.tenants.split(",") if n})
    started = time.monotonic()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="hostplane-wake-") as folder:
        running = start_platform(Path(folder) / "home", "moto", runtime_ports=max(args.tenants) + 50)
        try:
            stop_platform_agent(running.settings.home_dir)
            out = asyncio.run(measure(args, running))
        finally:
            stop_platform(running)
    report(args, out)
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"wake-{stamp}.json"
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                           capture_output=True, text=True).stdout.split("\n")
    meta = {"at": stamp, "machine": host_platform.platform(), "cpus": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30), "sandbox": sandbox.decide().to_json(),
            "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                     text=True).stdout.strip(),
            "uncommitted": [line for line in dirty if line.strip()],
            "load_average_before": load_before, "load_average_after": os.getloadavg(),
            "wall_s": round(time.monotonic() - started), "options": vars(args), "goals": GOALS}
    path.write_text(json.dumps(meta | out, indent=2, default=str) + "\n")
    print(f"saved {path}")
    met = all("skipped" not in s and s["wake_ms"]["failed"] == 0 and s["concurrent"]["ok"] == s["concurrent"]["requests"]
              for s in out["sizes"])
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
