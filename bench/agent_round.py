"""What the runtime agent's round costs per sleeping tenant: the CPU of the agent and of
PostgreSQL each round, with N tenants registered and asleep (no process; the agent holds
and watches each one's socket), nothing changing.

Scale to zero makes sleepers nearly free in memory (bench/wake.py); this measures the
other half. The agent runs a round every second whatever happens, so whatever it does per
registered tenant is paid every second by every tenant, asleep or not, and it competes
with the warm tenants' requests for the cores (bench/density.py: the agent's CPU per edge
request doubled from 250 to 1,000 tenants).

A platform (moto, PostgreSQL, ...) whose own agent is stopped; N services registered the
way the provisioner registers them; the agent's state file says each is asleep (what a
tenant that served nothing for its idle period leaves); then an agent in this process runs
`--rounds` rounds back to back, timed by CPU (its own `time.process_time`, PostgreSQL's
from the process table). One round more runs under cProfile for where the time goes.

    python bench/agent_round.py [--tenants 100,1000] [--rounds 30]

Prints the figures and saves bench/results/agent-round-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.support.fleet import cpu_by_component, cpu_spent, save  # noqa: E402
from hostplane.local.agent import state as agent_state  # noqa: E402
from hostplane.local.agent.agent import Agent  # noqa: E402
from hostplane.local.ephemeral import start_platform, stop_components, stop_platform  # noqa: E402
from services.resources.registry import deregister_service, ensure_schema, port_range, register_service  # noqa: E402

RESULTS = REPO / "bench" / "results"
IDLE_AFTER_S = 900


async def grow(conn: asyncpg.Connection, home: Path, names: list[str], ports: range) -> None:
    """Register `names` and record them asleep in the agent's state file."""
    state = agent_state.load(home)
    for name in names:
        port = await register_service(conn, name, None, ports=ports, idle_after_s=IDLE_AFTER_S)
        state.tenants[name] = agent_state.RunningTenant(
            tenant_id=name, app_port=port, health_port=0, asleep=True, app_state="asleep",
            idle_after_s=IDLE_AFTER_S, slept_at=time.time())
    agent_state.save(home, state)


async def rounds(agent: Agent, n: int) -> dict:
    """`n` rounds back to back: the agent's and PostgreSQL's CPU per round, in ms."""
    await agent.reconcile()  # the first binds every socket
    ours, theirs = [], []
    for _ in range(n):
        box0 = cpu_by_component()  # before the agent's clock starts: the scan is ours, not the agent's
        cpu0 = time.process_time()
        await agent.reconcile()
        ours.append((time.process_time() - cpu0) * 1000)
        theirs.append(cpu_spent(box0).get("postgres", 0.0) * 1000)
    return {"agent_ms": {"p50": round(statistics.median(ours), 2), "mean": round(statistics.fmean(ours), 2),
                         "max": round(max(ours), 2)},
            "postgres_ms": {"p50": round(statistics.median(theirs), 2), "mean": round(statistics.fmean(theirs), 2)}}


async def profiled(agent: Agent) -> list[str]:
    profile = cProfile.Profile()
    profile.enable()
    await agent.reconcile()
    profile.disable()
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(12)
    return [line for line in out.getvalue().splitlines() if line.strip()][-13:]


async def measure(args: argparse.Namespace, running) -> dict:
    home, settings = running.settings.home_dir, running.settings
    dsn = running.conn.control_dsn
    sizes = sorted(int(s) for s in args.tenants.split(","))
    ports = port_range(settings)
    conn = await asyncpg.connect(dsn)
    await ensure_schema(conn)
    names: list[str] = []
    out = []
    try:
        for size in sizes:
            new = [f"sleeper-{i:05d}" for i in range(len(names), size)]
            await grow(conn, home, new, ports)
            names += new
            agent = Agent(home, dsn, settings.artifacts_dir or home / "artifacts", events="agent", settings=settings)
            try:
                agent.adopt()
                row = {"tenants": size, **await rounds(agent, args.rounds), "profile": await profiled(agent)}
                row["agent_ms_per_tenant"] = round(row["agent_ms"]["mean"] / size, 4)
                held = sum(1 for t in names if agent.listeners.held(t) is not None)
                row["sockets_held"] = held
                if held != size:
                    raise SystemExit(f"{size} tenants asleep but {held} sockets held")
            finally:
                agent.listeners.close_all()
                agent.sleep_stops.shutdown(wait=False)
                if agent.conn is not None:
                    await agent.conn.close()
            out.append(row)
            print(f"{size:5d} asleep: agent {row['agent_ms']['p50']:7.2f} ms a round (p50; mean "
                  f"{row['agent_ms']['mean']:.2f}, max {row['agent_ms']['max']:.2f}), PostgreSQL "
                  f"{row['postgres_ms']['mean']:.2f} ms, {row['agent_ms_per_tenant'] * 1000:.1f} µs per tenant", flush=True)
    finally:
        for name in names:
            await deregister_service(conn, name)
        await conn.close()
    return {"rounds": args.rounds, "sizes": out}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tenants", default="100,1000", help="sizes, ascending")
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--label", default="")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="hp-agent-round-") as folder:
        running = start_platform(Path(folder), "moto", runtime_ports=max(int(s) for s in args.tenants.split(",")) + 100)
        try:
            stop_components(running.settings, ("runtime-agent",))
            result = asyncio.run(measure(args, running))
        finally:
            stop_platform(running)
    result["label"] = args.label
    for row in result["sizes"]:
        print(f"\n{row['tenants']} asleep, one round under cProfile (by own time):")
        print("\n".join(row["profile"]))
    print("saved", save(RESULTS, "agent-round", result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
