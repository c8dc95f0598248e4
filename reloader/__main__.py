"""`python -m reloader --tenant ID --artifacts DIR --port P --health-port H ...`

The foreground process of one tenant runtime (the ECS container on AWS, a process
started by the local runtime agent). SIGTERM or SIGINT: stop polling, drain, exit 0
within the grace period. SIGUSR1: read current.json now (the pointer moved). The tenant
environment comes from --env-file (JSON object) or HOSTPLANE_TENANT_ENV; it is handed to the app only and never logged. On AWS
(`--events bus`) reports go to the bus under the task role and the requests served are
published each minute for autoscaling; locally (`--events file:<runtime folder>/events.jsonl`)
the runtime holds no credentials and the runtime agent publishes its reports
(hostplane.local.agent.reports).
"""

# ruff: noqa: E402  (rich, and ssl for a reloader reporting through a file, kept out before any import)
from __future__ import annotations

import argparse
import sys

from reloader import hide_platform_packages


def _reports_to_bus(argv: list[str]) -> bool:
    """Whether `--events` is `bus` (the default), read before anything imports asyncio: only
    then does the reloader speak TLS. Spelled out in full (`--events X`, `--events=X`, the last
    counts) or it is taken as `bus`, which only keeps TLS; main() checks the two agree."""
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--events", default="bus")
    return pre.parse_known_args(argv)[0].events == "bus"


# Here, in the entry point: reloader modules imported in-process are unaffected.
hide_platform_packages(tls=_reports_to_bus(sys.argv[1:]))

import asyncio
import os
import signal
import tempfile
from pathlib import Path

import structlog

from artifacts.store import ArtifactStore
from core.logging import configure_logging
from reloader.config import RuntimeConfig, load_tenant_env
from reloader.health import serve_health
from reloader.landlock import forbid_tcp_bind
from reloader.reporting import reporter_from
from reloader.runtime import Runtime
from reloader.traffic import requests_metric_from

log = structlog.get_logger("reloader")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m reloader", description=__doc__.splitlines()[0])
    p.add_argument("--tenant", required=True)
    p.add_argument("--artifacts", type=Path, required=True, help="artifact store root")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="app port (0: any free one, printed in the log)")
    p.add_argument("--health-port", type=int, default=0, help="port of /runtime/healthz")
    p.add_argument("--listen-fd", type=int, help="serve on this inherited listening socket instead of binding --port")
    p.add_argument("--work-dir", type=Path, help="local disk for verified releases (default: a temp dir)")
    p.add_argument("--env-file", type=Path, help="JSON object: the tenant's environment variables")
    p.add_argument("--events", default="bus", help="bus (AWS) | file:PATH (locally, published by the agent) | none")
    p.add_argument("--owner", default="", help="marker of the launcher (the local agent finds its children by it)")
    defaults = RuntimeConfig(tenant_id="x", artifacts=Path("."), work_dir=Path("."))
    for name in ("poll_interval", "start_timeout", "health_timeout", "grace", "probation", "backoff_initial",
                 "backoff_max", "stable_after", "health_interval", "verify_retry_for", "idle_close",
                 "memory_check_interval", "count_interval", "zygote_delay", "zygote_idle"):
        p.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(defaults, name))
    p.add_argument("--memory-mb", type=int, default=defaults.memory_mb)
    p.add_argument("--crash-loop-threshold", type=int, default=defaults.crash_loop_threshold)
    p.add_argument("--smoke-path", default=defaults.smoke_path)
    p.add_argument("--no-zygote", dest="zygote", action="store_false",
                   help="start every app generation cold instead of forking it from a warm interpreter")
    return p.parse_args(argv)


async def run(args: argparse.Namespace) -> int:
    from contracts.naming import validate_tenant_id

    tenant = validate_tenant_id(args.tenant)
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix=f"hostplane-runtime-{tenant}-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    knobs = {k: getattr(args, k) for k in RuntimeConfig.__dataclass_fields__ if hasattr(args, k)
             and k not in ("artifacts", "work_dir", "port", "health_port", "host", "listen_fd")}
    cfg = RuntimeConfig(tenant_id=tenant, artifacts=args.artifacts, work_dir=work_dir, host=args.host,
                        port=args.port, health_port=args.health_port, listen_fd=args.listen_fd,
                        tenant_env=load_tenant_env(args.env_file, dict(os.environ)), **knobs)
    runtime = Runtime(cfg, ArtifactStore(cfg.artifacts), reporter_from(args.events, tenant))
    loop = asyncio.get_running_loop()
    # SIGUSR1: the pointer moved (the runtime agent relays the migrator's notice). Listened for
    # before the health port answers: the agent pokes only a runtime whose health it has seen,
    # and SIGUSR1's default action would end the process.
    loop.add_signal_handler(signal.SIGUSR1, runtime.poke)
    health = await serve_health(cfg.host, cfg.health_port, runtime.snapshot, runtime.metrics.exposition)
    health_port = health.sockets[0].getsockname()[1]
    # Both our sockets are bound: from here on no tenant code can bind a TCP port (reloader.landlock).
    if (why := forbid_tcp_bind()) is not None:
        log.warning("sandbox.tcp_bind_unrestricted", tenant_id=tenant, reason=why)
    metric = requests_metric_from(args.events, tenant, runtime.requests)
    publishing = asyncio.create_task(metric.run()) if metric else None
    log.info("runtime.started", tenant_id=tenant, app_port=runtime.port, health_port=health_port,
             pid=os.getpid(), artifacts=str(cfg.artifacts), memory_mb=cfg.memory_mb)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, runtime.stopping.set)
    await runtime.run()
    log.info("runtime.stopping", tenant_id=tenant)
    if publishing is not None:
        publishing.cancel()
    await runtime.shutdown()
    health.close()
    log.info("runtime.stopped", tenant_id=tenant)
    return 0


def main(argv: list[str] | None = None) -> int:
    configure_logging(json_output=True)
    args = parse_args(argv)
    if args.events == "bus" and sys.modules.get("ssl", ...) is None:
        raise SystemExit("--events: give it whole (--events bus | file:PATH | none), once")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
