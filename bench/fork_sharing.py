"""What forking app workers from a warm interpreter could save in memory, before building it.

A running tenant is its reloader plus one app worker (bench/runtime_memory.py); the goal is
≤ 40 MB of pages only the tenant holds, and a generated app's worker (uvicorn, starlette,
asyncpg, redis-py) alone is ≈ 28 MB. Three ways to start that worker, each measured after
it served `--requests` requests (so the pages a real worker dirties are dirtied) and sat
idle for a second:

  cold        a fresh interpreter imports everything (today, after the zygote retires);
  tenant      the reloader forks a template before its loop starts and every worker forks
              from that template (one tree per tenant: the interpreter's own pages shared
              between the tenant's reloader and its worker, nothing shared across tenants);
  shared      one interpreter that has imported the framework (and frozen its objects for
              the collector) forks every tenant's worker: the Android model, a process that
              would have to serve every tenant (not built; see bench/README.md).

For each: the memory only the tenant's own processes map (bench/support/pages.py; the
shared zygote is not the tenant's and is left out, as the box pays it once), and USS.

    python bench/fork_sharing.py [--requests 300] [--runs 3]

Prints the figures and saves bench/results/fork-sharing-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULTS = REPO / "bench" / "results"
MB = 2**20
WAYS = ("cold", "tenant", "shared")


# --- the processes measured: nothing heavy is imported at this module's top ----------------

def preload() -> None:
    """What the runtime's zygote imports (reloader.zygote.PRELOAD), platform packages hidden."""
    import reloader
    from reloader.zygote import PRELOAD

    reloader.hide_platform_packages()
    for name in PRELOAD:
        importlib.import_module(name)


def serve(path: str) -> None:
    """The worker: a starlette app under uvicorn on a Unix socket, until killed."""
    preload()
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def items(request):
        return JSONResponse({"items": [{"id": i, "title": f"task {i}"} for i in range(20)]})

    app = Starlette(routes=[Route("/items", items)])
    uvicorn.Server(uvicorn.Config(app, uds=path, log_level="warning", lifespan="off")).run()


def play(way: str, path: str, seconds: float) -> None:
    """The tenant's side: start its worker the `way` asked, behave like a reloader for
    `seconds` (an event loop waking often, allocating a little), then print the pids whose
    pages are the tenant's and wait to be killed."""
    if way == "shared":  # this process is the shared zygote: only the worker is the tenant's
        from reloader.zygote import _preload

        _preload()  # what the runtime's zygote does: hide, import, collect, freeze
        if (worker := os.fork()) == 0:
            serve(path)
        print(json.dumps({"tenant": [worker]}), flush=True)
        signal.pause()
    import reloader

    reloader.hide_platform_packages()
    import reloader.__main__  # noqa: F401  this process is the tenant's reloader
    if way == "cold":
        worker = subprocess.Popen([sys.executable, "-I", str(Path(__file__).resolve()), "--serve", path],
                                  env={"PYTHONPATH": str(REPO)})
        tenant = [os.getpid(), worker.pid]
    else:  # a template forked before the loop starts; workers fork from it
        gc.collect()
        gc.freeze()
        if (template := os.fork()) == 0:
            if (worker := os.fork()) == 0:
                serve(path)
            os.waitpid(worker, 0)
            os._exit(0)
        tenant = [os.getpid(), template]

    async def run() -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            await asyncio.sleep(0.05)
            [str(i) for i in range(200)]
    asyncio.run(run())
    print(json.dumps({"tenant": tenant}), flush=True)
    signal.pause()


# --- the measurement ------------------------------------------------------------------------

async def drive(path: str, requests: int) -> None:
    from reloader import probe

    deadline = time.monotonic() + 30
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise SystemExit("the worker did not start")
        await asyncio.sleep(0.02)
    for _ in range(requests):
        answer = await probe.get(path, "/items", 5)
        assert answer.status_code == 200


def one_run(way: str, requests: int) -> dict:
    import psutil

    from bench.support.pages import private_mb

    folder = tempfile.mkdtemp(prefix="hp-fork-")
    path = f"{folder}/worker.sock"
    player = subprocess.Popen([sys.executable, "-I", str(Path(__file__).resolve()), "--play", way, "--socket", path,
                               "--seconds", "3"], stdout=subprocess.PIPE, text=True, env={"PYTHONPATH": str(REPO)},
                              start_new_session=True)
    try:
        asyncio.run(drive(path, requests))
        line = player.stdout.readline()
        time.sleep(1)
        pids = json.loads(line)["tenant"]
        family = set(pids) | {k.pid for p in pids for k in psutil.Process(p).children(recursive=True)}
        return {"tenant_private_mb": private_mb(sorted(family)),
                "uss_mb": sorted(round(psutil.Process(p).memory_full_info().uss / MB, 1) for p in family)}
    finally:
        os.killpg(player.pid, signal.SIGKILL)
        player.wait()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--serve", help=argparse.SUPPRESS)
    p.add_argument("--play", choices=WAYS, help=argparse.SUPPRESS)
    p.add_argument("--socket", help=argparse.SUPPRESS)
    p.add_argument("--seconds", type=float, default=3.0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        serve(args.serve)
        return 0
    if args.play:
        play(args.play, args.socket, args.seconds)
        return 0
    if os.geteuid() != 0:
        raise SystemExit("needs root: page frame numbers (/proc/<pid>/pagemap) are hidden otherwise")
    from bench.support.fleet import save

    result: dict = {"requests": args.requests, "runs": args.runs}
    for way in WAYS:
        runs = [one_run(way, args.requests) for _ in range(args.runs)]
        result[way] = {"tenant_private_mb": statistics.median(r["tenant_private_mb"] for r in runs), "runs": runs}
        print(f"{way:7} the tenant's own pages {result[way]['tenant_private_mb']:6.1f} MB   "
              f"(USS of its processes: {runs[-1]['uss_mb']})", flush=True)
    print("saved", save(RESULTS, "fork-sharing", result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
