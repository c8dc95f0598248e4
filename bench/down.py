"""`hostplane up` and `hostplane down --purge` through the CLI, as a user runs them, with a
few ready tenants: how long stopping the platform takes.

The servers `down` stops were started by an earlier `hostplane up` process, so they are not
its children: an exited one stays a zombie until init reaps it. `down` used to wait for
that reaping (psutil.wait_procs), 2 s per process here; core.process.stop now counts an
exited process as gone.

    python bench/down.py [--rounds 3] [--tenants 2] [--emulator moto]

Prints a table and saves bench/results/down-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.support.fleet import save, summary  # noqa: E402
from hostplane.local.ephemeral import RunningPlatform, platform_settings  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"


def timed(env: dict[str, str], *args: str) -> float:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "hostplane", *args], env=env, capture_output=True, text=True,
                          timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"hostplane {' '.join(args)} failed: {done.stderr[-1000:]}")
    return time.monotonic() - started


def one_round(emulator: str, tenants: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="hp-down-") as folder:
        settings = platform_settings(Path(folder) / "home", emulator)
        env = RunningPlatform(settings=settings, conn=None, emulator=emulator).env()  # type: ignore[arg-type]
        up = timed(env, "up")
        for i in range(tenants):
            timed(env, "tenant", "create", f"d{i}", "--app", str(REPO / "examples" / "tasks.yaml"), "--wait",
                  "--timeout", "120")
        return up, timed(env, "down", "--purge")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--tenants", type=int, default=2)
    p.add_argument("--emulator", default="moto", choices=["moto", "localstack"])
    args = p.parse_args()
    ups, downs = [], []
    for _ in range(args.rounds):
        up, down = one_round(args.emulator, args.tenants)
        ups.append(up)
        downs.append(down)
    result = {"emulator": args.emulator, "tenants": args.tenants, "up_s": summary(ups), "down_s": summary(downs)}
    table = Table(title=f"hostplane up / down --purge ({args.emulator}, {args.tenants} ready tenants)")
    for col in ("command", "n", "p50 s", "max s"):
        table.add_column(col)
    for name, key in (("up", "up_s"), ("down --purge", "down_s")):
        table.add_row(name, str(result[key]["n"]), str(result[key]["p50"]), str(result[key]["max"]))
    Console().print(table)
    print("saved", save(RESULTS, "down", result))


if __name__ == "__main__":
    main()
