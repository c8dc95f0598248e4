"""Many tenants on one throwaway platform, driven through the public API and edge.

The benchmarks measure what a user would see: creations go through `POST /v1/tenants`
(the same path as `hostplane tenant create`), readiness is the API's own status, and
requests go through the Caddy edge with the tenant's Host header.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from hostplane.local.ephemeral import RunningPlatform, start_platform, stop_platform
from core.state import CREDENTIALS_FILE, load_state

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_SPEC = (REPO / "examples" / "tasks.yaml").read_text()
SETTLED = {"ready", "failed", "deleted"}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else float("nan")


def component(proc: psutil.Process) -> str:
    """Which part of the box a process is, for where the edge's CPU goes."""
    name = proc.info["name"] or ""
    cmd = " ".join(proc.info["cmdline"] or [])
    if proc.pid == os.getpid():
        return "bench client"
    if name in ("hp-worker", "hp-zygote") or "reloader.worker" in cmd:
        return "app workers"
    for key, label in (("caddy", "caddy"), ("postgres", "postgres"), ("valkey", "valkey"),
                       ("-m reloader", "reloaders"), ("router_config.resolver", "route resolver"),
                       ("hostplane.local.agent", "runtime agent")):
        if key in name or key in cmd:
            return label
    return "other"


def cpu_by_component() -> dict[tuple[int, float], tuple[str, float]]:
    """CPU seconds (user + system) so far of every process on the box, by (pid, start time),
    with its component. Kept per process so that a difference counts only what each process
    spent in between (a process that exited meanwhile is left out; summed by component, its
    whole past went missing and a PostgreSQL backend's exit made that component negative)."""
    out: dict[tuple[int, float], tuple[str, float]] = {}
    for proc in psutil.process_iter(["name", "cmdline", "cpu_times", "create_time"]):
        times = proc.info["cpu_times"]
        if times is None or proc.info["create_time"] is None:
            continue
        out[(proc.pid, proc.info["create_time"])] = (component(proc), times.user + times.system)
    return out


def cpu_spent(before: dict[tuple[int, float], tuple[str, float]]) -> dict[str, float]:
    """CPU seconds each component spent since `before` (cpu_by_component): each process's own
    difference, a process started since from zero."""
    spent: dict[str, float] = {}
    for key, (part, seconds) in cpu_by_component().items():
        spent[part] = spent.get(part, 0.0) + seconds - before.get(key, (part, 0.0))[1]
    return spent


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50": round(statistics.median(values), 1), "p95": round(percentile(values, 0.95), 1),
            "p99": round(percentile(values, 0.99), 1), "max": round(max(values), 1)}


def throughput(cpu_before: dict[tuple[int, float], tuple[str, float]], t0: float, done: int) -> dict[str, Any]:
    """Requests/s since `t0`, each component's CPU-ms per request since `cpu_before`
    (cpu_by_component; a process started since counts from zero), and how busy that kept the cores."""
    wall = time.perf_counter() - t0
    cpu = {k: round(v * 1000 / done, 2) for k, v in cpu_spent(cpu_before).items()}
    return {"requests_per_s": round(done / wall, 1), "cpu_ms_per_request": cpu,
            "cpu_busy": round(sum(cpu.values()) * done / 1000 / wall / (psutil.cpu_count() or 1), 2)}


@dataclass
class Fleet:
    running: RunningPlatform
    api: httpx.AsyncClient
    edge: httpx.AsyncClient
    edge_port: int
    created_at: dict[str, float] = field(default_factory=dict)

    @classmethod
    async def start(cls, home: Path, emulator: str = "moto") -> Fleet:
        running = await asyncio.to_thread(lambda: start_platform(home, emulator, runtime_ports=2000))
        state = load_state(running.settings.home_dir)
        token = json.loads((running.settings.home_dir / CREDENTIALS_FILE).read_text())["api_token"]
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=32)
        api = httpx.AsyncClient(base_url=state.api_url, headers={"Authorization": f"Bearer {token}"},
                                timeout=60, limits=limits)
        edge = httpx.AsyncClient(base_url=f"http://127.0.0.1:{running.settings.edge_port}", timeout=10, limits=limits)
        return cls(running, api, edge, running.settings.edge_port)

    async def stop(self) -> None:
        await self.api.aclose()
        await self.edge.aclose()
        await asyncio.to_thread(stop_platform, self.running)

    async def create(self, names: list[str], spec: str = EXAMPLE_SPEC, *,
                     idle_after_s: dict[str, int] | None = None) -> dict[str, str]:
        """Submit every creation at once (each with its idle period when `idle_after_s` names
        it); returns the names the API refused, with why."""
        async def one(name: str) -> tuple[str, str | None]:
            self.created_at[name] = time.monotonic()
            body: dict[str, Any] = {"name": name, "app": spec}
            if idle_after_s and name in idle_after_s:
                body["idle_after_s"] = idle_after_s[name]
            resp = await self.api.post("/v1/tenants", json=body)
            return name, None if resp.status_code == 202 else f"{resp.status_code}: {resp.text[:200]}"

        results = await asyncio.gather(*(one(n) for n in names))
        return {name: err for name, err in results if err}

    async def states(self) -> dict[str, dict[str, Any]]:
        resp = await self.api.get("/v1/tenants")
        resp.raise_for_status()
        body = resp.json()
        items = body["tenants"] if isinstance(body, dict) else body
        return {t["name"]: t for t in items}

    async def wait_settled(self, names: list[str], timeout: float) -> dict[str, float]:
        """Seconds from each creation to `ready` (polling the API every 0.5 s); tenants
        not ready by the deadline (or failed) are missing from the result."""
        ready: dict[str, float] = {}
        pending = set(names)
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            states = await self.states()
            now = time.monotonic()
            for name in list(pending):
                state = states.get(name, {}).get("state")
                if state == "ready":
                    ready[name] = now - self.created_at[name]
                if state in SETTLED:
                    pending.discard(name)
            if pending:
                await asyncio.sleep(0.5)
        return ready

    async def edge_latency(self, names: list[str], requests: int, concurrency: int = 8) -> dict[str, Any]:
        """GET /healthz on random tenants through the edge; latency in ms and errors."""
        latencies: list[float] = []
        errors: list[str] = []
        queue = [random.choice(names) for _ in range(requests)]

        async def worker() -> None:
            while queue:
                name = queue.pop()
                start = time.perf_counter()
                try:
                    resp = await self.edge.get("/healthz", headers={"Host": f"{name}.localhost"})
                    if resp.status_code != 200:
                        errors.append(f"{name}: {resp.status_code}")
                        continue
                except httpx.HTTPError as exc:
                    errors.append(f"{name}: {type(exc).__name__}")
                    continue
                latencies.append((time.perf_counter() - start) * 1000)

        before, t0 = cpu_by_component(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        done = max(len(latencies) + len(errors), 1)
        return {"latency_ms": summary(latencies), "errors": len(errors), "error_samples": errors[:5],
                **throughput(before, t0, done)}

    async def edge_at_rate(self, names: list[str], rate: float, seconds: float) -> dict[str, Any]:
        """GET /healthz on random tenants at `rate` requests/s (Poisson arrivals, open loop):
        each request starts on schedule whether or not the earlier ones finished, and its latency
        counts from its scheduled start, so a stall shows in the figures instead of slowing the
        load (no coordinated omission). A closed loop of N clients measures the box at
        saturation; this measures it under a given traffic."""
        latencies: list[float] = []
        errors: list[str] = []

        async def one(name: str, due: float) -> None:
            try:
                resp = await self.edge.get("/healthz", headers={"Host": f"{name}.localhost"})
            except httpx.HTTPError as exc:
                errors.append(f"{name}: {type(exc).__name__}")
                return
            if resp.status_code != 200:
                errors.append(f"{name}: {resp.status_code}")
                return
            latencies.append((time.perf_counter() - due) * 1000)

        tasks: list[asyncio.Task[None]] = []
        before, t0 = cpu_by_component(), time.perf_counter()
        due = t0
        while due < t0 + seconds:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            tasks.append(asyncio.create_task(one(random.choice(names), due)))
            due += random.expovariate(rate)
        await asyncio.gather(*tasks)
        return {"offered_per_s": rate, "latency_ms": summary(latencies), "errors": len(errors),
                "error_samples": errors[:5], **throughput(before, t0, max(len(tasks), 1))}

    def runtime_memory(self) -> dict[str, Any]:
        """RSS and USS of every tenant runtime (reloader + app workers), from the agent's state."""
        path = self.running.settings.home_dir / "runtime" / "agent.json"
        tenants = json.loads(path.read_text()).get("tenants", {}) if path.exists() else {}
        rss = uss = procs = 0
        for rec in tenants.values():
            if not rec.get("pid"):
                continue  # asleep: no process (psutil.Process(None) would be this process)
            try:
                root = psutil.Process(rec["pid"])
                for proc in (root, *root.children(recursive=True)):
                    info = proc.memory_full_info()
                    rss, uss, procs = rss + info.rss, uss + info.uss, procs + 1
            except (psutil.Error, KeyError, TypeError):
                continue
        n = max(len(tenants), 1)
        running = sum(1 for rec in tenants.values() if rec.get("pid"))
        return {"runtimes": len(tenants), "running": running, "asleep": sum(1 for r in tenants.values() if r.get("asleep")),
                "processes": procs, "rss_mb_per_tenant": round(rss / n / 2**20, 1),
                "uss_mb_per_tenant": round(uss / n / 2**20, 1), "rss_mb_total": round(rss / 2**20),
                "uss_mb_per_running_tenant": round(uss / max(running, 1) / 2**20, 1),
                "rss_mb_per_running_tenant": round(rss / max(running, 1) / 2**20, 1)}

    async def dlq_depths(self) -> dict[str, int]:
        from core.aws import aws_client
        from events.topology import topology

        depths = {}
        async with aws_client("sqs", self.running.settings) as sqs:
            for q in topology(self.running.settings.name_prefix).queues:
                url = (await sqs.get_queue_url(QueueName=q.dlq_name))["QueueUrl"]
                attrs = await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
                depths[q.service] = int(attrs["Attributes"]["ApproximateNumberOfMessages"])
        return depths


def save(results_dir: Path, name: str, payload: dict[str, Any]) -> Path:
    import os
    import platform as host_platform
    from datetime import UTC, datetime

    results_dir.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = results_dir / f"{name}-{stamp}.json"
    meta = {"at": stamp, "machine": host_platform.platform(), "cpus": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30)}
    out.write_text(json.dumps(meta | payload, indent=2) + "\n")
    return out
