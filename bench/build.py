"""Build benchmark: spec → published artifact, and a spec change through a running platform.

  - build (in-process, no platform): the builder's generate → package (compile, zipapp)
    → publish into an artifact store, for a 3-entity and a 30-entity spec, `--runs` times
    each; the app name changes every run so each build is new (no "unchanged" shortcut);
  - update (an ephemeral moto platform, every service running): `PUT /v1/tenants/<name>/app`
    (a new optional field) → MigrationsApplied in the tenant's event log (GET
    /v1/tenants/<name>/events), and → the new version serving at the edge (/healthz polled
    every 20 ms through the edge reports the release number). The event log also splits
    the path into hops: request → TenantChanged (builder) → MigrationsApplied (migrator) →
    ReleaseActivated (reloader, after its poll of current.json, app start and health).

    python bench/build.py [--runs 20] [--changes 10]

Prints a table and saves bench/results/build-<timestamp>.json.
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

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from artifacts.store import ArtifactStore  # noqa: E402
from spec.load import load_app_spec  # noqa: E402
from hostplane.local.ephemeral import start_platform, stop_platform  # noqa: E402
from services.builder.codegen import generate, package  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
EDGE_POLL_S = 0.02


def stats(ms: list[float]) -> dict[str, float]:
    ordered = sorted(ms)
    return {"n": len(ms), "p50_ms": round(statistics.median(ordered), 1),
            "p95_ms": round(ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))], 1),
            "max_ms": round(ordered[-1], 1)}


def spec_of(entities: int, run: int) -> dict:
    """`entities` entities of 5 fields each, references between neighbours, one page each."""
    model = {}
    for i in range(entities):
        fields = {"title": {"type": "string", "required": True, "max_length": 200},
                  "done": {"type": "boolean", "default": False}, "due": {"type": "date"},
                  "rank": {"type": "integer", "min": 1, "max": 5}}
        if i:
            fields["parent"] = {"type": "reference", "to": f"e{i - 1}"}
        else:
            fields["kind"] = {"type": "enum", "values": ["a", "b"]}
        model[f"e{i}"] = {"fields": fields}
    pages = [{"path": f"/e{i}", "title": f"Entity {i}", "shows": f"e{i}"} for i in range(entities)]
    return {"app": f"Bench {run}", "entities": model, "pages": pages}


def build_case(entities: int, runs: int) -> dict:
    stages: dict[str, list[float]] = {"generate": [], "package": [], "publish": [], "total": []}
    size = 0
    with tempfile.TemporaryDirectory(prefix="hp-bench-build-") as root:
        store = ArtifactStore(Path(root))
        for run in range(runs):
            t0 = time.perf_counter()
            spec = load_app_spec(spec_of(entities, run))
            files = generate(spec)
            t1 = time.perf_counter()
            artifact = package(files)
            t2 = time.perf_counter()
            store.publish_release("bench", run + 1, artifact)
            t3 = time.perf_counter()
            for key, ms in (("generate", t1 - t0), ("package", t2 - t1), ("publish", t3 - t2), ("total", t3 - t0)):
                stages[key].append(ms * 1000)
            size = len(artifact)
    return {"entities": entities, "artifact_bytes": size, **{k: stats(v) for k, v in stages.items()}}


async def through_platform(running, changes: int) -> dict:
    import httpx

    settings, tenant = running.settings, "bench-build"
    token = json.loads((settings.home_dir / "credentials.json").read_text())["api_token"]
    spec = spec_of(3, 0)
    api = httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.api_port}", timeout=30,
                            headers={"Authorization": f"Bearer {token}"})
    edge = httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.edge_port}", timeout=5,
                             headers={"Host": f"{tenant}.localhost"})

    async def events(correlation: str) -> dict[str, float]:
        resp = await api.get(f"/v1/tenants/{tenant}/events", params={"limit": 1000})
        resp.raise_for_status()
        return {e["event_type"]: datetime.fromisoformat(e["occurred_at"]).timestamp()
                for e in resp.json()["events"] if e["correlation_id"] == correlation}

    async def settled(correlation: str, started: float) -> dict[str, float]:
        while "MigrationsApplied" not in (seen := await events(correlation)):
            if failed := [t for t in seen if t.endswith("Failed")]:
                raise RuntimeError(f"{tenant}: {failed}")
            if time.perf_counter() - started > 120:
                raise RuntimeError(f"{tenant}: no MigrationsApplied in 120 s ({sorted(seen)})")
            await asyncio.sleep(0.05)
        return seen

    async def serving(version: int, started: float) -> float:
        while True:
            try:
                resp = await edge.get("/healthz")
                if resp.status_code == 200 and resp.json().get("version", 0) >= version:
                    return (time.perf_counter() - started) * 1000
            except httpx.HTTPError:
                pass
            if time.perf_counter() - started > 120:
                raise RuntimeError(f"{tenant}: version {version} never served at the edge")
            await asyncio.sleep(EDGE_POLL_S)

    try:
        started = time.perf_counter()
        resp = await api.post("/v1/tenants", json={"name": tenant, "app": spec})
        resp.raise_for_status()
        await settled(resp.json()["request"]["correlation_id"], started)
        create_ms = await serving(1, started)
        out: dict[str, list[float]] = {"migrations_applied": [], "edge_serving": [], "hop_builder": [],
                                       "hop_migrator": [], "hop_activation": []}
        for i in range(changes):
            live = (await edge.get("/healthz")).json()["version"]
            spec["entities"]["e0"]["fields"][f"extra{i}"] = {"type": "integer"}
            wall, started = time.time(), time.perf_counter()
            resp = await api.put(f"/v1/tenants/{tenant}/app", json={"app": spec})
            resp.raise_for_status()
            correlation = resp.json()["request"]["correlation_id"]
            edge_task = asyncio.create_task(serving(live + 1, started))
            seen = await settled(correlation, started)
            out["migrations_applied"].append((time.perf_counter() - started) * 1000)
            out["edge_serving"].append(await edge_task)
            while "ReleaseActivated" not in seen and time.perf_counter() - started < 30:
                await asyncio.sleep(0.05)
                seen = await events(correlation)
            out["hop_builder"].append((seen["TenantChanged"] - wall) * 1000)
            out["hop_migrator"].append((seen["MigrationsApplied"] - seen["TenantChanged"]) * 1000)
            if "ReleaseActivated" in seen:
                out["hop_activation"].append((seen["ReleaseActivated"] - seen["MigrationsApplied"]) * 1000)
        return {"create_to_serving_ms": round(create_ms, 1), **{k: stats(v) for k, v in out.items() if v}}
    finally:
        await api.aclose()
        await edge.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--changes", type=int, default=10)
    args = parser.parse_args()
    builds = [build_case(n, args.runs) for n in (3, 30)]
    with tempfile.TemporaryDirectory(prefix="hp-bench-build-") as home:
        running = start_platform(Path(home), "moto")
        try:
            update = asyncio.run(through_platform(running, args.changes))
        finally:
            stop_platform(running)

    table = Table(title=f"spec → published artifact, in-process ({args.runs} builds each)")
    for col in ("entities", "artifact KB", "generate p50", "package p50", "publish p50", "total p50 ms", "total p95 ms"):
        table.add_column(col, justify="right")
    for b in builds:
        table.add_row(str(b["entities"]), str(round(b["artifact_bytes"] / 1024, 1)), str(b["generate"]["p50_ms"]),
                      str(b["package"]["p50_ms"]), str(b["publish"]["p50_ms"]), str(b["total"]["p50_ms"]),
                      str(b["total"]["p95_ms"]))
    Console(width=140).print(table)
    table = Table(title=f"tenant update through a running platform ({args.changes} changes, edge polled every "
                        f"{int(EDGE_POLL_S * 1000)} ms)")
    for col in ("from the request to", "p50 ms", "p95 ms", "max ms"):
        table.add_column(col, justify="right")
    labels = {"migrations_applied": "MigrationsApplied", "edge_serving": "new version serving at the edge",
              "hop_builder": "hop: TenantChanged (builder)", "hop_migrator": "hop: TenantChanged → MigrationsApplied",
              "hop_activation": "hop: MigrationsApplied → ReleaseActivated"}
    for key, label in labels.items():
        if key in update:
            s = update[key]
            table.add_row(label, str(s["p50_ms"]), str(s["p95_ms"]), str(s["max_ms"]))
    Console(width=140).print(table)
    print(f"create → serving at the edge: {update['create_to_serving_ms']} ms")
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"build-{stamp}.json"
    out.write_text(json.dumps({"at": stamp, "machine": host_platform.platform(), "cpus": os.cpu_count(),
                               "builds": builds, "update": update}, indent=2) + "\n")
    print(f"saved {out}")


if __name__ == "__main__":
    main()
