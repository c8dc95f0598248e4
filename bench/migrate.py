"""Migration benchmark: spec change → MigrationsApplied (release marked live).

A throwaway moto platform, one tenant provisioned for real. Measured:
  - handler: the migrator's work in-process per kind of change (read the verified
    release's spec, plan, one transaction as the tenant role, ledger, current.json),
    with `--rows` rows already in the table (a tighter CHECK scans them all);
  - bus: from committing TenantChanged to the outbox to MigrationsApplied recorded in
    the event log, through the running migrator service (relay, EventBridge, SQS, consumer);
  - api: from `PUT /v1/tenants/<name>/app` (a new optional field) accepted to its
    MigrationsApplied recorded: API → builder (generate, compile, publish) → migrator.

    python bench/migrate.py [--rounds 10] [--rows 10000]

Prints a table and saves bench/results/migrate-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform as host_platform
import statistics
import sys
import tempfile
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spec.load import load_app_spec  # noqa: E402
from contracts.envelope import Envelope  # noqa: E402
from contracts.events_v1 import MigrationsApplied, TenantChanged, TenantRequested  # noqa: E402
from events.outbox import add_to_outbox  # noqa: E402
from events.replay import list_events  # noqa: E402
from hostplane.local.ephemeral import start_platform, stop_platform  # noqa: E402
from services.migrator import adapters  # noqa: E402
from services.migrator.handlers import on_tenant_changed  # noqa: E402
from services.provisioner.handlers import on_tenant_requested  # noqa: E402
from services.resources.wiring import open_resources  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
BASE = {"app": "Bench", "entities": {"task": {"fields": {
    "title": {"type": "string", "required": True, "max_length": 200},
    "done": {"type": "boolean", "default": False}}}}}


def stats(ms: list[float]) -> dict[str, float]:
    ordered = sorted(ms)
    return {"n": len(ms), "p50_ms": round(statistics.median(ordered), 1),
            "p95_ms": round(ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))], 1),
            "max_ms": round(ordered[-1], 1)}


def changed(deps, tenant: str, version: int, spec: dict, **kw) -> Envelope:
    app = load_app_spec(spec)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(zipfile.ZipInfo("spec.json", (2026, 1, 1, 0, 0, 0)), app.canonical_json())  # same bytes again
    m = deps.store.publish_release(tenant, version, buf.getvalue())
    return Envelope.new(TenantChanged(version=version, artifact_path=f"{tenant}/releases/{version}/app.pyz",
                                      sha256=m.sha256, size=m.size, spec_sha256=app.digest(), **kw),
                        tenant_id=tenant, producer="builder")


async def run(running, rounds: int, rows: int) -> dict:
    res = await open_resources(running.settings)
    deps = await adapters.bootstrap(running.settings)
    tenant = "bench-migrate"
    req = Envelope.new(TenantRequested(spec_ref="spec:sha256:" + "0" * 64, spec_sha256="0" * 64),
                       tenant_id=tenant, producer="api")
    try:
        await on_tenant_requested(req, res)
        spec, version, out = json.loads(json.dumps(BASE)), 1, {}

        async def step(kind: str, mutate=None, **kw) -> None:
            nonlocal version
            if mutate:
                mutate(spec)
            started = time.perf_counter()
            [event] = await on_tenant_changed(changed(deps, tenant, version, spec, **kw), deps)
            assert isinstance(event, MigrationsApplied), event
            out.setdefault(kind, []).append((time.perf_counter() - started) * 1000)
            version += 1

        await step("create first version")
        conn = await adapters.connect_as_tenant(await deps.secrets.read(deps.names(tenant)))
        await conn.execute("INSERT INTO task (title) SELECT 'task ' || g FROM generate_series(1, $1) g", rows)
        await conn.close()
        for i in range(rounds):
            await step("add entity", lambda s, i=i: s["entities"].__setitem__(f"e{i}", {"fields": {
                "name": {"type": "string", "required": True}}}))
            await step("add optional field", lambda s, i=i: s["entities"]["task"]["fields"].__setitem__(
                f"note{i}", {"type": "text"}))
            await step("add required field with default", lambda s, i=i: s["entities"]["task"]["fields"]
                       .__setitem__(f"prio{i}", {"type": "integer", "required": True, "default": 1}))
            await step(f"tighten a limit ({rows} rows checked)", lambda s, i=i: s["entities"]["task"]["fields"]
                       ["title"].__setitem__("max_length", 150 - i))
            replay = changed(deps, tenant, version - 1, spec)
            started = time.perf_counter()
            await on_tenant_changed(replay, deps)
            out.setdefault("replay (no-op)", []).append((time.perf_counter() - started) * 1000)
        handler = {kind: stats(ms) for kind, ms in out.items()}

        bus = []
        for i in range(rounds):
            spec["entities"]["task"]["fields"][f"bus{i}"] = {"type": "date"}
            env = changed(deps, tenant, version, spec)
            version += 1
            started = time.perf_counter()
            async with res.records.pool.acquire() as c, c.transaction():
                await add_to_outbox(c, [env])
            while not [e for e in await list_events(res.records.pool, tenant=tenant, event_type="MigrationsApplied")
                       if e.causation_id == env.event_id]:
                if time.perf_counter() - started > 60:
                    raise TimeoutError("no MigrationsApplied within 60 s")
                await asyncio.sleep(0.02)
            bus.append((time.perf_counter() - started) * 1000)
        return {"rows": rows, "handler": handler, "bus": stats(bus), "api": await through_api(running, rounds)}
    finally:
        await deps.aclose()
        await res.aclose()


async def migrated(pool, tenant: str, correlation_id: str, started: float) -> float:
    while not [e for e in await list_events(pool, tenant=tenant, event_type="MigrationsApplied")
               if str(e.correlation_id) == correlation_id]:
        failed = [e.event_type for e in await list_events(pool, tenant=tenant) if e.event_type.endswith("Failed")
                  and str(e.correlation_id) == correlation_id]
        if failed or time.perf_counter() - started > 120:
            raise RuntimeError(f"no MigrationsApplied for {tenant} ({failed or 'timeout'})")
        await asyncio.sleep(0.05)
    return (time.perf_counter() - started) * 1000


async def through_api(running, rounds: int) -> dict:
    """Spec change at the API → MigrationsApplied, with the real builder in between."""
    import asyncpg
    import httpx

    settings, tenant = running.settings, "bench-api"
    token = json.loads((settings.home_dir / "credentials.json").read_text())["api_token"]
    spec = json.loads(json.dumps(BASE))
    pool = await asyncpg.create_pool(running.conn.control_dsn, min_size=1, max_size=2)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.api_port}", timeout=30,
                                     headers={"Authorization": f"Bearer {token}"}) as http:
            started = time.perf_counter()
            resp = await http.post("/v1/tenants", json={"name": tenant, "app": spec})
            resp.raise_for_status()
            first = await migrated(pool, tenant, resp.json()["request"]["correlation_id"], started)
            out = []
            for i in range(rounds):
                spec["entities"]["task"]["fields"][f"api{i}"] = {"type": "integer"}
                started = time.perf_counter()
                resp = await http.put(f"/v1/tenants/{tenant}/app", json={"app": spec})
                resp.raise_for_status()
                out.append(await migrated(pool, tenant, resp.json()["request"]["correlation_id"], started))
        return {"create_to_first_migration_ms": round(first, 1), "update": stats(out)}
    finally:
        await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--rows", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hp-bench-mig-") as home:
        running = start_platform(Path(home), "moto")
        try:
            result = asyncio.run(run(running, args.rounds, args.rows))
        finally:
            stop_platform(running)
    table = Table(title="spec change → MigrationsApplied")
    for col in ("path", "change", "n", "p50 ms", "p95 ms", "max ms"):
        table.add_column(col)
    for kind, s in result["handler"].items():
        table.add_row("handler", kind, str(s["n"]), str(s["p50_ms"]), str(s["p95_ms"]), str(s["max_ms"]))
    b = result["bus"]
    table.add_row("bus", "add optional field", str(b["n"]), str(b["p50_ms"]), str(b["p95_ms"]), str(b["max_ms"]))
    a = result["api"]["update"]
    table.add_row("api+builder", "add optional field", str(a["n"]), str(a["p50_ms"]), str(a["p95_ms"]),
                  str(a["max_ms"]))
    table.add_row("api+builder", "create → first migration", "1", *[str(result["api"]["create_to_first_migration_ms"])] * 3)
    Console().print(table)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"migrate-{stamp}.json"
    path.write_text(json.dumps({"at": stamp, "machine": host_platform.platform(), "cpus": os.cpu_count(),
                                **result}, indent=2) + "\n")
    print(f"saved {path}")


if __name__ == "__main__":
    main()
