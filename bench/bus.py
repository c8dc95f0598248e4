"""Bus benchmark: events/s and publish→handler latency through EventBridge + SQS.

For each emulator (moto, LocalStack) a throwaway platform is started on free loopback
ports; for 1 and 8 consumer workers, N AppUpdateRequested events (one tenant each, so
per-tenant serialisation does not throttle) are published in PutEvents batches of 10
and consumed from the builder queue (no builder service runs yet, so nothing else takes them) by the real Consumer (inbox transaction
included). Latency = handler start − publish call start, per event.

    python bench/bus.py [--events 300] [--emulators moto,localstack] [--workers 1,8]

Prints a table and saves bench/results/bus-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import platform as host_platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from contracts import Envelope, AppUpdateRequested  # noqa: E402
from events.consumer import Consumer, ConsumerOptions  # noqa: E402
from events.publisher import Publisher  # noqa: E402
from events.topology import topology  # noqa: E402
from core.logging import configure_logging  # noqa: E402
from hostplane.local.ephemeral import RunningPlatform, start_platform, stop_platform  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
TIMEOUT_S = 300


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def run_case(running: RunningPlatform, workers: int, n_events: int, run: int) -> dict:
    topo = topology(running.settings.name_prefix)
    started: dict[str, float] = {}
    handled: dict[str, float] = {}
    done = asyncio.Event()

    async def on_requested(envelope, _deps):
        if str(envelope.event_id) in expected:  # an earlier case's stragglers are not counted
            handled[str(envelope.event_id)] = time.perf_counter()
        if len(handled) >= n_events:
            done.set()
        return []

    digest = hashlib.sha256(b"bench").hexdigest()
    envelopes = [
        Envelope.new(
            AppUpdateRequested(spec_ref=f"specs/bench-{run}-{i}/1.json", spec_sha256=digest),
            tenant_id=f"bench-{run}-{i:04d}",
            producer="api",
        )
        for i in range(n_events)
    ]
    expected = {str(e.event_id) for e in envelopes}
    pool = await asyncpg.create_pool(running.conn.control_dsn, min_size=2, max_size=workers + 4)
    consumer = Consumer(
        "builder", {AppUpdateRequested: on_requested}, None, pool, running.settings, topo,
        concurrency=workers, options=ConsumerOptions(wait_time_s=1),
    )
    task = asyncio.create_task(consumer.run())
    try:
        async with Publisher(running.settings, topo.bus_name) as pub:
            t0 = time.perf_counter()
            for i in range(0, n_events, 10):
                chunk = envelopes[i : i + 10]
                now = time.perf_counter()
                await pub.publish(chunk)
                started.update({str(e.event_id): now for e in chunk})
            publish_s = time.perf_counter() - t0
        await asyncio.wait_for(done.wait(), TIMEOUT_S)
    finally:
        consumer.stop()
        await task
        await pool.close()
    latencies = [(handled[k] - started[k]) * 1000 for k in started if k in handled]
    total_s = max(handled.values()) - t0
    return {
        "emulator": running.emulator,
        "workers": workers,
        "events": n_events,
        "handled": len(handled),
        "publish_s": round(publish_s, 3),
        "total_s": round(total_s, 3),
        "events_per_s": round(len(handled) / total_s, 1),
        "latency_ms": {
            "p50": round(statistics.median(latencies), 1),
            "p95": round(_percentile(latencies, 0.95), 1),
            "max": round(max(latencies), 1),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--emulators", default="moto,localstack")
    parser.add_argument("--workers", default="1,8")
    args = parser.parse_args()
    configure_logging(json_output=False)  # warnings only: the table is the output
    results = []
    for emulator in args.emulators.split(","):
        with tempfile.TemporaryDirectory(prefix=f"hostplane-bench-{emulator}-") as home:
            running = start_platform(Path(home), emulator)
            try:
                for run, workers in enumerate(int(w) for w in args.workers.split(",")):
                    results.append(asyncio.run(run_case(running, workers, args.events, run)))
            finally:
                stop_platform(running)
    table = Table(title=f"bus: {args.events} events, publish → handler")
    for col in ("emulator", "workers", "events/s", "publish s", "p50 ms", "p95 ms", "max ms", "handled"):
        table.add_column(col, justify="right")
    for r in results:
        lat = r["latency_ms"]
        table.add_row(r["emulator"], str(r["workers"]), str(r["events_per_s"]), str(r["publish_s"]), str(lat["p50"]),
                      str(lat["p95"]), str(lat["max"]), f"{r['handled']}/{r['events']}")
    Console(width=120).print(table)
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"bus-{stamp}.json"
    out.write_text(json.dumps({"at": stamp, "machine": host_platform.platform(), "cpus": __import__("os").cpu_count(),
                               "results": results}, indent=2) + "\n")
    print(f"saved {out}")


if __name__ == "__main__":
    main()
