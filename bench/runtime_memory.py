"""What one idle running tenant costs: the reloader and its app worker, by USS/RSS/PSS,
and the reloader's import time and module count.

A reloader is started as the tests start one (tests.support.runtime_harness: file event
reporter, the tiny sample app), a release goes live, the tenant stays idle for `--idle`
seconds, then every process of the runtime is measured. USS (memory only this process
holds) is what the tenant adds to the box; issue 17 asks for ≤ 40 MB of it in total.

    python bench/runtime_memory.py [--idle 5] [--import-runs 7] [--label before]

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
from tests.support.runtime_harness import start_runtime  # noqa: E402
from tests.support.sample_app import SampleApp  # noqa: E402

RESULTS = REPO / "bench" / "results"
MB = 2**20


def memory(proc: psutil.Process) -> dict[str, float]:
    info = proc.memory_full_info()
    return {"uss_mb": round(info.uss / MB, 1), "rss_mb": round(info.rss / MB, 1), "pss_mb": round(info.pss / MB, 1)}


def idle_tenant(idle: float) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="hp-mem-") as folder:
        rt = start_runtime(Path(folder))
        try:
            rt.publish(SampleApp(version=1))
            rt.wait_for(lambda: rt.serving_version() == 1, 30, "version 1 serving")
            time.sleep(idle)  # past probation; the runtime only polls and probes
            reloader = psutil.Process(rt.proc.pid)
            workers = reloader.children(recursive=True)
            if len(workers) != 1:
                raise SystemExit(f"expected one app worker, found {len(workers)}")
            return {"reloader": memory(reloader), "worker": memory(workers[0])}
        finally:
            rt.stop()


def python(code: str, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *flags, "-c", code], cwd=REPO, capture_output=True, text=True,
                          check=True)


def import_cost(module: str, runs: int) -> dict[str, object]:
    """Wall time of a fresh interpreter importing `module`, less a bare one; its module count;
    and the packages whose modules take longest to import (-X importtime, self time)."""
    def wall(code: str) -> float:
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            python(code)
            times.append(time.perf_counter() - t0)
        return min(times)  # best of `runs`: the machine is shared, noise only adds

    bare = wall("pass")
    loaded = wall(f"import {module}")
    modules = int(python(f"import sys, {module}; print(len(sys.modules))").stdout)
    bare_modules = int(python("import sys; print(len(sys.modules))").stdout)
    by_package: dict[str, int] = {}
    for line in python(f"import {module}", "-X", "importtime").stderr.splitlines():
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
    args = p.parse_args()
    bare = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    time.sleep(1)
    bare_mem = memory(psutil.Process(bare.pid))
    bare.kill()
    bare.wait()
    procs = idle_tenant(args.idle)
    result = {
        "label": args.label, "idle_s": args.idle, "bare_python": bare_mem, **procs,
        "tenant_uss_mb": round(procs["reloader"]["uss_mb"] + procs["worker"]["uss_mb"], 1),
        "reloader_import": import_cost("reloader.__main__", args.import_runs),
        "worker_import": import_cost("reloader.worker", args.import_runs),
    }
    for name in ("bare_python", "reloader", "worker"):
        m = result[name]
        print(f"{name:12} USS {m['uss_mb']:6.1f} MB  RSS {m['rss_mb']:6.1f} MB  PSS {m['pss_mb']:6.1f} MB")
    print(f"{'tenant':12} USS {result['tenant_uss_mb']:6.1f} MB (reloader + worker; target ≤ 40)")
    for name in ("reloader_import", "worker_import"):
        imp = result[name]
        print(f"{name:16} {imp['import_ms']} ms beyond a bare python ({imp['bare_python_ms']} ms), "
              f"{imp['modules']} modules ({imp['bare_modules']} bare)")
        print("    heaviest:", ", ".join(f"{k} {v}" for k, v in imp["heaviest_ms"].items()))
    print("saved", save(RESULTS, "runtime-memory", result))


if __name__ == "__main__":
    main()
