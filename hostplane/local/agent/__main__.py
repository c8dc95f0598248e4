"""The local runtime agent: the local stand-in for ECS.

The process around agent.Agent, as `hostplane up` starts it:

    python -m hostplane.local.agent --home DIR --dsn-from-home [--artifacts DIR] [--interval 1]

One agent per home (a lock file). SIGTERM/SIGINT stop every reloader and exit
(`hostplane down`); SIGHUP exits leaving them running (agent upgrade). Ready once the
first round has converged (--ready-file, or HOSTPLANE_READY_FILE when `up` starts it).
"""

# ruff: noqa: E402  (the stop signals are caught before the slow imports)
from __future__ import annotations

import argparse
import asyncio
import fcntl
import os
import signal
import sys
from pathlib import Path

# A stop asked for before the loop's handlers exist (the agent takes a moment to import
# and open its state): noted by `_early`, honoured once the agent runs, so `hostplane
# down` right after `up` still stops the runtimes instead of killing the agent mid-start.
EARLY: list[int] = []


def _early(signum: int, _frame: object) -> None:
    EARLY.append(signum)


if __name__ == "__main__":
    for _sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(_sig, _early)

import structlog

from hostplane.local.agent import state as agent_state
from hostplane.local.agent.agent import Agent
from reloader import sandbox

log = structlog.get_logger("runtime-agent")


def _lock(home: Path):
    path = home / "runtime" / "agent.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "w")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SystemExit(f"another runtime agent already runs for {home}") from None
    return fh


async def _main(args: argparse.Namespace) -> int:
    from core.settings import Settings

    home = args.home.resolve()
    settings = Settings(home=home)
    if args.dsn:
        dsn = args.dsn
    else:
        from core.state import connection_info

        dsn = connection_info(home).control_dsn
    lock = _lock(home)
    try:
        isolation = sandbox.decide()
    except (sandbox.SandboxUnavailable, ValueError) as exc:
        log.error("sandbox.required_unavailable", error=str(exc))
        return 2
    agent = Agent(home, dsn, args.artifacts or home / "artifacts", host=args.host, interval=args.interval,
                  grace=args.grace, events=args.reloader_events, reloader_args=tuple(args.reloader_arg),
                  settings=settings, isolation=isolation)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, agent.stop_requested.set)

    def leave() -> None:
        agent.leave_running = True
        agent.stop_requested.set()

    loop.add_signal_handler(signal.SIGHUP, leave)
    if EARLY:
        leave() if EARLY[-1] == signal.SIGHUP else agent.stop_requested.set()
    log.info("agent.started", pid=os.getpid(), home=str(home), state=str(agent_state.state_path(home)))
    ready = args.ready_file or (Path(os.environ["HOSTPLANE_READY_FILE"]) if os.environ.get("HOSTPLANE_READY_FILE")
                                else None)
    await agent.run(once=args.once, ready_file=ready)
    lock.close()
    log.info("agent.stopped", left_running=agent.leave_running)
    return 0


def main(argv: list[str] | None = None) -> int:
    from core.logging import configure_logging

    p = argparse.ArgumentParser(prog="python -m hostplane.local.agent", description=__doc__.splitlines()[0])
    p.add_argument("--home", type=Path, required=True)
    p.add_argument("--dsn-from-home", action="store_true", help="control database DSN from <home>/state.json")
    p.add_argument("--dsn", help="control database DSN (else --dsn-from-home)")
    p.add_argument("--artifacts", type=Path, help="artifact store root (default <home>/artifacts)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("--grace", type=float, default=10.0, help="drain budget of each reloader")
    p.add_argument("--reloader-events", default="agent",
                   help="agent (a file in the runtime folder, published by the agent) | bus | file:PATH | none")
    p.add_argument("--reloader-arg", action="append", default=[], help="extra reloader option, written --reloader-arg=--poll-interval=0.5")
    p.add_argument("--ready-file", type=Path)
    p.add_argument("--once", action="store_true", help="reconcile once and exit (children keep running)")
    args = p.parse_args(argv)
    if not args.dsn and not args.dsn_from_home:
        p.error("give --dsn or --dsn-from-home")
    configure_logging(json_output=True)
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())
