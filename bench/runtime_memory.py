"""What one idle running tenant costs: the reloader, its zygote and its app worker, by
USS/RSS/PSS, their CPU a second when idle, and the reloader's import time and module count.

A reloader is started as the tests start one (tests.support.runtime_harness: file event
reporter, the tiny sample app), release 1 goes live (started cold), then release 2 (forked
from the zygote, as every later start is), the tenant stays idle for `--idle` seconds, then
every process of the runtime is measured. USS (memory only this process holds) is what the
tenant adds to the box; issue 17 asks for ≤ 40 MB of it in total. A forked worker shares
the zygote's pages, which then count in neither one's USS: the PSS sum (shared pages split
between their holders) is the honest total with a zygote, and is reported beside it.

    python bench/runtime_memory.py [--idle 5] [--import-runs 7] [--cpu-seconds 60] [--label before]

Prints the figures and saves bench/results/runtime-memory-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.support.fleet import save  # noqa: E402
from bench.support.pages import private_mb  # noqa: E402
from hostplane.local.platform import compile_source  # noqa: E402
from reloader.control import WORKER_NAME, ZYGOTE_NAME  # noqa: E402
from tests.support.runtime_harness import start_runtime  # noqa: E402
from tests.support.sample_app import SampleApp  # noqa: E402

RESULTS = REPO / "bench" / "results"
MB = 2**20
PROCESSES = ("reloader", "zygote", "worker")


def memory(proc: psutil.Process) -> dict[str, float]:
    info = proc.memory_full_info()
    return {"uss_mb": round(info.uss / MB, 1), "rss_mb": round(info.rss / MB, 1), "pss_mb": round(info.pss / MB, 1)}


def idle_tenant(idle: float, zygote: bool = True) -> dict[str, dict]:
    """Release 1 (a cold start), release 2 (a deploy: the zygote starts after it), release 3
    (forked). Measured `idle` s later ("editing": the zygote is kept for the next deploy) and
    again once the zygote is retired (`zygote_idle`, "idle": what a tenant left alone costs).
    Without the zygote ("cold": it never starts), all three start cold."""
    with tempfile.TemporaryDirectory(prefix="hp-mem-") as folder:
        knobs = {"zygote_idle": idle + 3} if zygote else {"zygote_delay": 3600}
        rt = start_runtime(Path(folder), **knobs)
        try:
            reloader = psutil.Process(rt.proc.pid)
            for version in (1, 2, 3):
                if version == 3 and zygote:
                    rt.wait_for(lambda: rt.processes(ZYGOTE_NAME), 30, "the zygote")
                    time.sleep(1)  # warm: the zygote has imported and said so
                rt.publish(SampleApp(version=version))
                rt.wait_for(lambda v=version: rt.serving_version() == v, 30, f"version {version} serving")
            time.sleep(idle)  # past probation; the runtime only polls and probes
            workers, zygotes = rt.processes(WORKER_NAME), rt.processes(ZYGOTE_NAME)
            if len(workers) != 1 or len(zygotes) != int(zygote):
                raise SystemExit(f"expected one worker and {int(zygote)} zygote, found {len(workers)}, {len(zygotes)}")
            procs = {"reloader": reloader, "worker": workers[0], **({"zygote": zygotes[0]} if zygote else {})}
            first = measure(procs)
            if not zygote:
                return {"cold": first}
            first["worker_forked"] = workers[0].ppid() == zygotes[0].pid
            rt.wait_for(lambda: not rt.processes(ZYGOTE_NAME), 30, "the zygote's retirement")
            rt.wait_for(lambda: len(rt.processes(WORKER_NAME)) == 1, 30, "the forked worker's replacement")
            time.sleep(1)
            return {"editing": first, "idle": measure({"reloader": reloader, "worker": rt.processes(WORKER_NAME)[0]})}
        finally:
            rt.stop()


def idle_cpu(seconds: float) -> dict[str, float]:
    """CPU-ms a second of an idle running tenant's reloader and worker at production
    intervals (poll 1 s, app probe 2 s, memory check 0.5 s), its /runtime/healthz asked as the
    runtime agent asks a runtime serving healthy (every SETTLED_PROBE_S; each second before
    stop 27). At 100 running tenants this background is what the edge's requests share the
    cores with (density.py)."""
    import asyncio

    from hostplane.local.agent.agent import SETTLED_PROBE_S
    from reloader import probe
    from reloader.config import RuntimeConfig

    defaults = RuntimeConfig(tenant_id="x", artifacts=Path("."), work_dir=Path("."))
    production = {k: getattr(defaults, k) for k in ("poll_interval", "health_interval", "probation",
                                                    "memory_check_interval", "start_timeout", "grace")}
    with tempfile.TemporaryDirectory(prefix="hp-cpu-") as folder:
        rt = start_runtime(Path(folder), **production)
        try:
            rt.publish(SampleApp(version=1))
            rt.wait_for(lambda: rt.serving_version() == 1, 30, "version 1 serving")
            time.sleep(production["probation"] + 3)
            procs = {"reloader": psutil.Process(rt.proc.pid), "worker": rt.processes(WORKER_NAME)[0]}
            before = {n: sum(p.cpu_times()[:2]) for n, p in procs.items()}

            async def agent_probes() -> None:
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    await probe.get(("127.0.0.1", rt.health_port), "/runtime/healthz", 1.0)
                    await asyncio.sleep(SETTLED_PROBE_S)
            asyncio.run(agent_probes())
            return {n: round((sum(p.cpu_times()[:2]) - before[n]) * 1000 / seconds, 2) for n, p in procs.items()}
        finally:
            rt.stop()


def measure(procs: dict[str, psutil.Process]) -> dict:
    out: dict = {name: memory(p) for name, p in procs.items()}
    out["tenant_uss_mb"] = round(sum(out[n]["uss_mb"] for n in procs), 1)
    out["tenant_pss_mb"] = round(sum(out[n]["pss_mb"] for n in procs), 1)
    out["tenant_private_mb"] = private_mb([p.pid for p in procs.values()])
    return out


def line(m: dict[str, float]) -> str:
    return f"USS {m['uss_mb']:6.1f} MB  RSS {m['rss_mb']:6.1f} MB  PSS {m['pss_mb']:6.1f} MB"


def python(code: str, *flags: str, argv: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *flags, "-c", code, *argv], cwd=REPO, capture_output=True, text=True,
                          check=True)


def import_cost(module: str, runs: int, argv: tuple[str, ...] = (), as_main: bool = False) -> dict[str, object]:
    """Wall time of a fresh interpreter importing `module`, less a bare one; its module count;
    and the packages whose modules take longest to import (-X importtime, self time). `argv`:
    the command line the import sees (the reloader decides from --events whether it needs TLS).
    `as_main`: run it as `python -m module` would, up to its command line (given none, it stops
    there): the cold app worker defers package inits only as a program (reloader.lean)."""
    load = (f"import runpy\ntry:\n    runpy.run_module({module!r}, run_name='__main__', alter_sys=True)\n"
            "except SystemExit:\n    pass" if as_main else f"import {module}")
    def wall(code: str) -> float:
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            python(code, argv=argv)
            times.append(time.perf_counter() - t0)
        return min(times)  # best of `runs`: the machine is shared, noise only adds

    bare = wall("pass")
    loaded = wall(load)
    modules = int(python(f"{load}\nimport sys\nprint(len(sys.modules))", argv=argv).stdout)
    bare_modules = int(python("import sys; print(len(sys.modules))").stdout)
    by_package: dict[str, int] = {}
    for line in python(load, "-X", "importtime", argv=argv).stderr.splitlines():
        if m := re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)", line):
            root = m[2].split(".")[0]  # self time, summed per top-level package
            by_package[root] = by_package.get(root, 0) + int(m[1])
    heaviest = sorted(by_package.items(), key=lambda kv: -kv[1])[:12]
    return {"import_ms": round((loaded - bare) * 1000), "bare_python_ms": round(bare * 1000),
            "modules": modules, "bare_modules": bare_modules,
            "heaviest_ms": {k: round(v / 1000, 1) for k, v in heaviest}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--idle", type=float, default=5.0, help="seconds idle before measuring")
    p.add_argument("--import-runs", type=int, default=7)
    p.add_argument("--label", default="", help="stored with the figures (before / after ...)")
    p.add_argument("--cpu-seconds", type=float, default=60.0, help="idle CPU measured over this long (0: not)")
    args = p.parse_args()
    # The runtime sees the source read-only and never writes bytecode: as after `hostplane up`,
    # compile what changed first, or an edited module is compiled in every reloader (≈ 1 MB more).
    compile_source()
    bare = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    time.sleep(1)
    bare_mem = memory(psutil.Process(bare.pid))
    bare.kill()
    bare.wait()
    procs = idle_tenant(args.idle) | idle_tenant(args.idle, zygote=False)
    result = {"label": args.label, "idle_s": args.idle, "bare_python": bare_mem, **procs}
    if args.cpu_seconds:
        result["idle_cpu_ms_per_s"] = idle_cpu(args.cpu_seconds)
    # as the local agent starts it: reports through a file (on AWS, --events bus, it also loads ssl)
    result["reloader_import"] = import_cost("reloader.__main__", args.import_runs, ("--events", "file:events.jsonl"))
    result["worker_import"] = import_cost("reloader.worker", args.import_runs, as_main=True)
    print(f"{'bare_python':20} {line(bare_mem)}")
    for state, what in (("cold", "no zygote: every release started cold"),
                        ("editing", "a deploy just now: worker forked from the zygote, kept for the next"),
                        ("idle", "no deploy for zygote_idle: the zygote retired")):
        print(f"{state}: {what}")
        for name in (n for n in PROCESSES if n in procs[state]):
            print(f"  {name:18} {line(procs[state][name])}")
        m = procs[state]
        print(f"  {'tenant':18} USS {m['tenant_uss_mb']:6.1f} MB  PSS {m['tenant_pss_mb']:6.1f} MB  "
              f"private {m['tenant_private_mb']:6.1f} MB{' (worker NOT forked)' if m.get('worker_forked') is False else ''}"
              " (target ≤ 40)")
    if cpu := result.get("idle_cpu_ms_per_s"):
        print(f"idle CPU at production intervals, probed as the agent does: reloader {cpu['reloader']} ms/s, "
              f"worker {cpu['worker']} ms/s")
    for name in ("reloader_import", "worker_import"):
        imp = result[name]
        print(f"{name:16} {imp['import_ms']} ms beyond a bare python ({imp['bare_python_ms']} ms), "
              f"{imp['modules']} modules ({imp['bare_modules']} bare)")
        print("    heaviest:", ", ".join(f"{k} {v}" for k, v in imp["heaviest_ms"].items()))
    print("saved", save(RESULTS, "runtime-memory", result))


if __name__ == "__main__":
    main()
