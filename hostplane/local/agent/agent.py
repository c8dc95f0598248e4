"""The local runtime agent: the local stand-in for ECS.

Level-triggered: every `interval` it reads the desired runtime services (the runtime
registry, services.resources.registry) and converges — one reloader process per running
tenant, serving on the tenant's registered `app_port` (the health port is the agent's
choice, kept); a reloader that died is restarted (with backoff); one whose tenant is
gone or stopped is drained and removed with its local files; a changed environment or
memory limit replaces it. When the database cannot be read nothing is started or
stopped: running tenants keep serving.

Each runtime runs sandboxed when the host allows it (reloader.sandbox: its own uid,
cgroups and filesystem view; `HOSTPLANE_SANDBOX`), with an environment of its own only
(no AWS credentials, none of ours): it appends its reports to a file the agent publishes
(hostplane.local.agent.reports). Removing a tenant stops its reloader, then kills
whatever is left in its cgroups, a daemon it double-forked included.

Reloaders run detached in their own sessions, so they outlive the agent. A restarted
agent re-adopts the children recorded in its state file (hostplane.local.agent.state:
pid + start time + command line) and stops any other reloader carrying its owner
marker, so there is never a duplicate or an orphan. Stopping stops every reloader;
`leave_running` leaves them running (agent upgrade). The process around it, its lock
and signals: `python -m hostplane.local.agent` (__main__.py).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Awaitable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import structlog

from core import process
from core.ports import free_port
from hostplane.local.agent import reports
from hostplane.local.agent import state as agent_state
from hostplane.local.agent.env import EnvUnavailable, resolve_env
from hostplane.local.agent.sleep import IdleClock, Listeners
from hostplane.local.agent.sleeping import NOT_ANSWERED, Sleeping
from hostplane.local.agent.state import AgentState, RunningTenant, is_our_reloader, now_iso, our_reloaders
from reloader import health, sandbox
from reloader import probe as http_probe
from services.resources.registry import POINTER_CHANNEL, DesiredService, desired_services, ensure_schema

log = structlog.get_logger("runtime-agent")
STABLE_AFTER_S = 60.0


START_CONCURRENCY = 8
# Runtimes started but not yet answering, at most: a thousand registered at once (a host
# restart, a bulk import) would otherwise all boot together and none would finish (wake.py
# at 1,000 on 2 cores: load average 437). The rest start in later rounds; a wake never waits.
MAX_WARMING = 16
WARMING_FOR_S = 60.0  # one still not answering after this long no longer holds a place
# Health probes in flight at once each round. All at once, 100 running tenants' reloaders
# answered together every second: a burst of runnable processes that edge requests queued
# behind (bench/density.py, p99). A few at a time spread the same work over the round.
PROBE_CONCURRENCY = 4
PROBE_TIMEOUT_S = 1.0  # a reloader slower than this to say how it is counts as unreachable
# A runtime found serving and healthy is asked again after this long, not every round: with
# 100 running tenants the probes cost ≈ 0.8 CPU-ms a second in each reloader and ≈ 50 in the
# agent (bench/runtime_memory.py --cpu-seconds, bench/density.py), time the edge's requests
# wait behind on 2 cores.
SETTLED_PROBE_S = 5.0
CRASH_LOOP = 3  # runtime deaths in a row (each within STABLE_AFTER_S of its start) that say RuntimeFailed
MAX_APP_STATE = 64  # characters of the app state a health answer may report (reloader.runtime's names)
REPORT_WATCH_S = 0.2  # between rounds, how soon a written report goes out (agent.watch_reports)
# ... but a tenant's file is read by the watch at most this often: one that writes without
# pause (a flood of junk) costs the agent one extra read a second, not five.
REPORT_WATCH_EVERY_S = 1.0
CHILD_BIND_S = 20.0  # a reloader binds its ports at once; their reservation need not outlive that


async def gather_bounded(limit: int, coros: Iterable[Awaitable[Any]]) -> None:
    """Await every one of `coros`, at most `limit` at a time."""
    gate = asyncio.Semaphore(limit)

    async def one(coro: Awaitable[Any]) -> None:
        async with gate:
            await coro

    await asyncio.gather(*(one(c) for c in coros))


class Agent(Sleeping):
    def __init__(self, home: Path, dsn: str, artifacts: Path, *, host: str = "127.0.0.1", interval: float = 1.0,
                 grace: float = 10.0, events: str = "agent", reloader_args: tuple[str, ...] = (),
                 settings=None, isolation: sandbox.Decision | None = None) -> None:
        self.home, self.dsn, self.artifacts = home.resolve(), dsn, artifacts.resolve()
        self.host, self.interval, self.grace, self.events = host, interval, grace, events
        self.reloader_args = reloader_args
        self.settings = settings
        self.owner = f"agent:{self.home}"
        self.state: AgentState = agent_state.load(self.home)
        self.conn: asyncpg.Connection | None = None
        self.streak: dict[str, int] = {}
        self.not_before: dict[str, float] = {}
        self.stop_requested = asyncio.Event()
        self.leave_running = False
        self.isolation = isolation or sandbox.decide()
        if not self.isolation.sandboxed and self.isolation.requested != "off":
            log.warning("sandbox.unavailable", reason=self.isolation.reason,
                        consequence="tenant runtimes run as the agent's own user: no uid, filesystem, "
                                    "memory or pids isolation between tenants and the platform")
        self.publisher = None  # events.publisher.Publisher, opened on the first report
        self.opening = asyncio.Lock()
        self.closing = contextlib.AsyncExitStack()  # the publisher's client, closed when the agent stops
        self.listeners = Listeners(host)  # every tenant's app socket (agent.sleep): they outlive runtimes
        self.idle = IdleClock()
        self.probed_at: dict[str, float] = {}  # tenant → when its health last answered (monotonic)
        self.failure_told: set[str] = set()  # RuntimeFailed published, not serving since (Sleeping.failing)
        self.desired: dict[str, DesiredService] = {}
        self.starting: set[str] = set()  # a start in flight (a wake does not wait for the round)
        self.wakes_in_flight: set[asyncio.Task] = set()
        self.stopping_to_sleep: set[str] = set()
        self.poked_while_stopping: set[str] = set()
        # Runtimes going to sleep drain for up to `grace` each, in threads of their own: in the
        # loop's default pool they held the threads a wake needs (a 1.2 s wake, bench/wake.py).
        self.sleep_stops = ThreadPoolExecutor(max_workers=8, thread_name_prefix="sleep-stop")
        self.relaying = asyncio.Lock()
        self.watch_relayed: dict[str, float] = {}  # tenant → when the watch last relayed it
        self.default_idle_s = settings.scale_to_zero_after if settings is not None else 0
        self.create_time = agent_state.create_time(os.getpid())
        self.saved = ""  # the state file's content as last written (less its updated_at)

    # --- lifecycle ---------------------------------------------------------------------------

    async def run(self, *, once: bool = False, ready_file: Path | None = None) -> None:
        self.adopt()
        watch = asyncio.create_task(self.watch_reports()) if self.events == "agent" and not once else None
        while True:
            await self.reconcile()
            if ready_file and not ready_file.exists():
                ready_file.parent.mkdir(parents=True, exist_ok=True)
                ready_file.write_text(str(os.getpid()))
            if once:  # its children keep running
                await self.close()
                return
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stop_requested.wait(), self.interval)
            if self.stop_requested.is_set():
                break
        if watch is not None:
            await watch
        if not self.leave_running:
            await asyncio.gather(*(self.remove(t) for t in list(self.state.tenants)))
        self.listeners.close_all()
        self.sleep_stops.shutdown(wait=False)
        await self.flush_facts()
        self.save()
        await self.close()

    async def close(self) -> None:
        """Close the bus client and the database connection (not the tenants' runtimes)."""
        await self.closing.aclose()
        if self.conn is not None:
            await self.conn.close()

    def adopt(self) -> None:
        """After a restart: keep the recorded children that are really ours, stop the rest."""
        for tenant, rec in self.state.tenants.items():
            if self.running(rec):
                log.info("runtime.adopted", tenant_id=tenant, pid=rec.pid)
            else:
                rec.pid, rec.create_time = None, None
        tracked = {rec.pid for rec in self.state.tenants.values() if rec.pid}
        for proc, args in our_reloaders(self.owner):
            if proc.pid not in tracked:
                log.warning("runtime.untracked_stopped", tenant_id=args.get("tenant"), pid=proc.pid)
                process.stop(proc.pid, timeout=self.grace + 5, target=agent_state.reloader_process(proc.pid))
        # Groups of runtimes not adopted (an agent killed while it removed a tenant): emptied
        # and removed now; a tenant still wanted gets fresh ones at its start.
        for tenant in sandbox.TenantCgroups.of_home(self.home):
            if tenant not in self.state.tenants or not self.state.tenants[tenant].pid:
                self.kill_leftovers(tenant)
        self.save()

    def running(self, rec: RunningTenant) -> bool:
        return is_our_reloader(rec.pid, rec.create_time, rec.tenant_id, self.owner)

    def save(self) -> None:
        """Write the state file when its content changed (`agent.updated_at`: when it last did).
        Called every round: at 1,000 sleeping tenants an unchanged write was a quarter of it."""
        self.state.agent = {"pid": os.getpid(), "create_time": self.create_time, "artifacts": str(self.artifacts),
                            "sandbox": self.isolation.to_json()}
        content = self.state.to_json()
        if content == self.saved:
            return
        self.state.agent["updated_at"] = now_iso()
        agent_state.save(self.home, self.state)
        self.saved = content

    # --- converging --------------------------------------------------------------------------

    async def reconcile(self) -> None:
        desired = await self.read_desired()
        if desired is not None:
            want = {d.tenant_id: d for d in desired if d.desired_state == "running"}
            self.desired = want
            gone = [t for t in self.state.tenants if t not in want]
            await asyncio.gather(*(self.remove(t) for t in gone))
            # Concurrently but bounded: a burst of new tenants must not start one by one
            # (each start reads a secret and spawns a process), nor all at once. Sleepers
            # inline: their round is a few lookups, and a task each was a third of the round
            # at 1,000 sleeping tenants (bench/agent_round.py).
            rest = [s for s in want.values() if not self.kept_asleep(s)]
            await gather_bounded(START_CONCURRENCY, (self.ensure(s) for s in rest))
        await self.refresh_health()
        await self.sleep_idle()
        await self.relay_reports()
        await self.flush_facts()
        self.save()

    async def read_desired(self) -> list[DesiredService] | None:
        try:
            if self.conn is None or self.conn.is_closed():
                self.conn = await asyncpg.connect(self.dsn, timeout=5)
                await ensure_schema(self.conn)
                await self.conn.add_listener(POINTER_CHANNEL, self.poke)
            return await desired_services(self.conn)
        except (OSError, asyncpg.PostgresError, asyncio.TimeoutError) as exc:
            log.warning("desired.unreadable", error=type(exc).__name__)  # the DSN holds a password
            if self.conn is not None:
                with contextlib.suppress(Exception):
                    await self.conn.close()
            self.conn = None
            return None

    def poke(self, _conn: object, _pid: int, _channel: str, tenant: str) -> None:
        """The migrator moved `tenant`'s pointer: its reloader reads it now (SIGUSR1), not at its
        next poll. Only a reloader whose health port has answered: it listens for SIGUSR1 by
        then (the signal's default action would end it)."""
        rec = self.state.tenants.get(tenant)
        if rec is not None and rec.asleep:
            self.wake(tenant, "deploy")  # a release counts as live once it proved itself
            return
        if tenant in self.stopping_to_sleep:
            self.poked_while_stopping.add(tenant)  # it wakes for the release as soon as it is down
        self.idle.active(tenant)  # a deploy is activity: the idle period starts again
        self.probed_at.pop(tenant, None)  # and its swap is seen by the next round's probe
        if rec is None or not rec.pid or rec.app_state in NOT_ANSWERED:
            return
        target = agent_state.reloader_process(rec.pid)
        if target is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(target, signal.SIGUSR1)

    def kept_asleep(self, service: DesiredService) -> bool:
        """A sleeping tenant's round (Sleeping.keep_asleep); False when it is not asleep."""
        rec = self.state.tenants.get(service.tenant_id)
        if rec is None or not rec.asleep or service.tenant_id in self.starting:
            return False
        rec.idle_after_s = self.idle_after(service)
        self.keep_asleep(rec, service)
        return True

    async def ensure(self, service: DesiredService) -> None:
        tenant = service.tenant_id
        rec = self.state.tenants.get(tenant)
        if tenant in self.starting or self.kept_asleep(service):
            return
        if rec is not None:
            rec.idle_after_s = self.idle_after(service)
        if rec is not None and self.running(rec):
            if rec.fingerprint == service.fingerprint:
                return
            log.info("runtime.replacing", tenant_id=tenant, why="environment or memory limit changed")
            await asyncio.to_thread(self.stop_runtime, rec)
            rec.pid = None
        elif rec is not None and rec.pid:
            self._died(rec)
        if time.monotonic() < self.not_before.get(tenant, 0.0) or self.warming() >= MAX_WARMING:
            return
        await self.start(service, rec)

    def warming(self) -> int:
        """Runtimes being started or booting (started in the last WARMING_FOR_S, not answering yet)."""
        now, booting = datetime.now(UTC), 0
        for rec in self.state.tenants.values():
            if rec.pid and rec.app_state in ("starting", "unreachable") and rec.started_at \
                    and (now - datetime.fromisoformat(rec.started_at)).total_seconds() < WARMING_FOR_S:
                booting += 1
        return booting + len(self.starting)

    def _died(self, rec: RunningTenant) -> None:
        uptime = time.time() - (rec.create_time or 0)
        streak = 1 if uptime >= STABLE_AFTER_S else self.streak.get(rec.tenant_id, 0) + 1
        self.streak[rec.tenant_id] = streak
        delay = min(30.0, 0.5 * 2 ** (streak - 1))
        self.not_before[rec.tenant_id] = time.monotonic() + delay
        log.warning("runtime.died", tenant_id=rec.tenant_id, pid=rec.pid, restart_in_s=delay)
        if streak >= CRASH_LOOP:
            self.failing(rec.tenant_id, "crash_loop", f"its runtime died {streak} times in a row")
        with contextlib.suppress(ChildProcessError, TypeError):
            os.waitpid(rec.pid, os.WNOHANG)  # our child (not if adopted): collect the zombie
        rec.pid, rec.create_time, rec.restarts = None, None, rec.restarts + 1
        rec.healthy, rec.app_state = False, "restarting"

    async def start(self, service: DesiredService, rec: RunningTenant | None) -> None:
        """Start the tenant's runtime; one start per tenant at a time (a wake and a round may race)."""
        if service.tenant_id in self.starting:
            return
        self.starting.add(service.tenant_id)
        try:
            await self._start(service, rec)
        finally:
            self.starting.discard(service.tenant_id)

    async def _start(self, service: DesiredService, rec: RunningTenant | None) -> None:
        tenant = service.tenant_id
        folder = self.home / "runtime" / tenant
        try:
            env = await resolve_env(service.env_ref, self.settings)
        except EnvUnavailable as exc:
            log.error("runtime.env_unavailable", tenant_id=tenant, error=str(exc))
            self.failing(tenant, "environment", str(exc))  # the message names the secret, never its value
            self.not_before[tenant] = time.monotonic() + 5
            return
        ports = self.ports(service, rec)
        if ports is None:
            return
        listen_fd = self.listeners.held(tenant).fileno()
        spec = None
        if self.isolation.sandboxed:
            spec = sandbox.spec_for(tenant, ports[0], self.home, self.artifacts, self.reloader_env(folder))
            await asyncio.to_thread(sandbox.prepare, spec, service.memory_mb)
        else:
            folder.mkdir(parents=True, exist_ok=True)
        env_file = folder / "env.json"  # readable by the tenant's uid alone
        sandbox.write_private(env_file, json.dumps(env).encode(), spec.uid if spec else None)
        log_path = self.home / "logs" / f"runtime-{tenant}.log"
        events = f"file:{folder / reports.EVENTS_FILE}" if self.events == "agent" else self.events
        cmd = [sys.executable, "-m", "reloader", "--tenant", tenant, "--artifacts", str(self.artifacts),
               "--host", self.host, "--port", str(ports[0]), "--health-port", str(ports[1]),
               "--listen-fd", str(listen_fd),
               "--work-dir", str(folder / "work"), "--env-file", str(env_file), "--memory-mb",
               str(service.memory_mb), "--events", events, "--grace", str(self.grace),
               *self.reloader_args, "--owner", self.owner]
        if spec is not None:
            cmd = sandbox.launch_command(spec, cmd)
        if self.events == "bus":  # the reloader publishes itself: it needs our settings (debugging only)
            pid = process.spawn(cmd, log_path, env={"HOSTPLANE_HOME": str(self.home)}, pass_fds=(listen_fd,))
        else:
            pid = process.spawn(cmd, log_path, env=self.reloader_env(folder), inherit_env=False,
                                pass_fds=(listen_fd,))
        self.state.tenants[tenant] = RunningTenant(
            tenant_id=tenant, app_port=ports[0], health_port=ports[1], pid=pid,
            create_time=agent_state.create_time(pid), host=self.host, memory_mb=service.memory_mb,
            fingerprint=service.fingerprint, started_at=now_iso(), restarts=rec.restarts if rec else 0,
            log=str(log_path), sandboxed=spec is not None, uid=spec.uid if spec else None,
            wakes=rec.wakes if rec else 0, idle_after_s=self.idle_after(service))
        self.idle.forget(tenant)  # its idle period starts now
        self.save()  # recorded before anything else can fail: a crash now leaves no orphan
        log.info("runtime.started", tenant_id=tenant, pid=pid, app_port=ports[0], health_port=ports[1],
                 sandboxed=spec is not None, uid=spec.uid if spec else None)

    @staticmethod
    def reloader_env(folder: Path) -> dict[str, str]:
        """All a reloader gets of an environment: no AWS credentials, no HOSTPLANE_*."""
        # PYTHONPATH: the agent's own checkout, the one the sandbox binds (a venv's editable
        # install may point at another checkout, which the sandbox does not show).
        return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1",
                "PYTHONDONTWRITEBYTECODE": "1", "HOME": str(folder),
                "PYTHONPATH": str(sandbox.source_root())}

    def ports(self, service: DesiredService, rec: RunningTenant | None) -> tuple[int, int] | None:
        """(app port, health port): the app port is the registered one (router-config points the
        edge there), bound by us (agent.sleep.Listeners) and handed to the runtime; if someone
        else holds it the tenant is not started elsewhere — the error is logged and recorded,
        and the next reconcile tries again."""
        health = rec.health_port if rec and rec.health_port else 0
        if not health or process.port_open(self.host, health):
            health = free_port(self.host, hold_s=CHILD_BIND_S)
        app = service.app_port
        if app is None:  # registered before ports existed: keep the agent-chosen one
            held = self.listeners.held(service.tenant_id)
            app = held.getsockname()[1] if held is not None else rec.app_port if rec and rec.app_port \
                and not process.port_open(self.host, rec.app_port) else free_port(self.host, hold_s=CHILD_BIND_S)
        try:
            self.listeners.ensure(service.tenant_id, app)
        except OSError:  # agent.sleep.PortTaken, mostly
            if rec is None or rec.app_state != "port_taken":  # once per episode, not every round
                log.error("runtime.port_taken", tenant_id=service.tenant_id, app_port=app,
                          error="another program listens on the tenant's registered port; retrying")
                self.failing(service.tenant_id, "port_taken", f"another program listens on its port {app}")
            if rec is None:
                rec = self.state.tenants[service.tenant_id] = RunningTenant(
                    tenant_id=service.tenant_id, app_port=app, health_port=health, host=self.host)
            rec.app_port, rec.healthy, rec.app_state = app, False, "port_taken"
            return None
        return app, health

    async def remove(self, tenant: str) -> None:
        """Drain and stop the tenant's reloader, kill whatever it leaves in its cgroups (a
        forked daemon), remove its local files, and only then forget it: a tenant absent from
        the state has nothing left on the host."""
        rec = self.state.tenants.get(tenant)
        if rec is not None and self.running(rec):
            await asyncio.to_thread(self.stop_runtime, rec)
            log.info("runtime.stopped", tenant_id=tenant, pid=rec.pid)
        self.listeners.close(tenant)
        self.idle.forget(tenant)
        if not self.leave_running:
            await asyncio.to_thread(self.kill_leftovers, tenant)
            await asyncio.to_thread(shutil.rmtree, self.home / "runtime" / tenant, ignore_errors=True)
            self.state.reports.pop(tenant, None)
        self.state.tenants.pop(tenant, None)
        # Nothing of it kept: a tenant created again under the name starts afresh (its first
        # failure is told, no inherited crash streak or restart delay, probed at once).
        for kept in (self.watch_relayed, self.probed_at, self.streak, self.not_before):
            kept.pop(tenant, None)
        self.failure_told.discard(tenant)

    def stop_runtime(self, rec: RunningTenant) -> None:
        process.stop(rec.pid, timeout=self.grace + 5, target=agent_state.reloader_process(rec.pid))

    def kill_leftovers(self, tenant: str) -> None:
        groups = sandbox.TenantCgroups(f"{sandbox.home_group(self.home)}/{tenant}")
        if not groups.exists():
            return
        if killed := groups.pids():
            log.warning("runtime.leftovers_killed", tenant_id=tenant, pids=len(killed))
        if left := groups.kill_all(timeout=10):
            log.error("runtime.leftovers_survived", tenant_id=tenant, pids=sorted(left))
            return
        groups.remove()
        if groups.exists():
            log.error("runtime.cgroups_left", tenant_id=tenant, group=groups.group)

    async def relay_reports(self, tenants: list[str] | None = None) -> None:
        """Publish what each tenant's reloader reported since the last round (agent.reports)."""
        if self.events == "agent":
            async with self.relaying:  # the round and the watch never read one file at once
                await reports.relay(self.home / "runtime", list(self.state.tenants) if tenants is None else tenants,
                                    self.state.reports, self.publish)

    async def watch_reports(self) -> None:
        """Between rounds, a report goes out within REPORT_WATCH_S of being written (a stat per
        running tenant, a read only of what grew): `update --wait` and `tenant show` learn of a
        swap without waiting for the next round. A runtime's last lines, written as it stops,
        go out with the round, which reads every tenant's file."""
        root = self.home / "runtime"
        while not self.stop_requested.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stop_requested.wait(), REPORT_WATCH_S)
            now = time.monotonic()
            running = [t for t, rec in self.state.tenants.items() if rec.pid]  # a sleeper writes nothing
            changed = [t for t in reports.pending(root, running, self.state.reports)
                       if now - self.watch_relayed.get(t, -REPORT_WATCH_EVERY_S) >= REPORT_WATCH_EVERY_S]
            if changed:
                self.watch_relayed.update(dict.fromkeys(changed, now))
                try:
                    await self.relay_reports(changed)
                except Exception as exc:  # noqa: BLE001  the round relays it then; the watch goes on
                    log.warning("runtime.report_watch_failed", error=type(exc).__name__)

    async def publish(self, envelopes: list) -> None:
        """Onto the bus through one client for the agent's life, opened at the first report (the
        round's facts and the report watch publish concurrently: they must not both open one)."""
        async with self.opening:
            if self.publisher is None:
                from events.publisher import Publisher  # aiobotocore is heavy: only when a report comes
                from events.topology import topology
                from core.settings import Settings

                settings = self.settings or Settings(home=self.home)
                self.publisher = await self.closing.enter_async_context(
                    Publisher(settings, topology(settings.name_prefix).bus_name))
        await self.publisher.publish(envelopes)

    async def refresh_health(self) -> None:
        """Each running reloader's /runtime/healthz. A reloader runs as its tenant, so its answer
        is the tenant's data: one of the wrong shape or size (or nested past the JSON parser's
        recursion limit) reads as unreachable and never stops the round nor lands in the state."""
        now = time.monotonic()

        async def probe(rec: RunningTenant) -> None:
            try:
                body = (await http_probe.get((rec.host, rec.health_port), health.PATH, PROBE_TIMEOUT_S)).json()
                app = body.get("app", {})
                version, state = app.get("live_version"), app.get("state", "unknown")
                served = body.get("runtime", {}).get("requests_served")
                if not (isinstance(state, str) and len(state) <= MAX_APP_STATE and isinstance(version, int | None)
                        and isinstance(served, int | None)):
                    raise ValueError("a health answer of the wrong shape")
                rec.live_version, rec.app_state, rec.requests_served = version, state, served
                rec.healthy = body.get("status") == "ok" and bool(app.get("healthy"))
                self.probed_at[rec.tenant_id] = now
            except (http_probe.ProbeError, ValueError, AttributeError, RecursionError):
                rec.healthy, rec.app_state = False, "unreachable"

        due = [r for r in self.state.tenants.values() if r.pid and probe_due(
            r, self.probed_at.get(r.tenant_id), self.idle.idle_for(r.tenant_id), now)]
        await gather_bounded(PROBE_CONCURRENCY, (probe(r) for r in due))
        for rec in due:
            if rec.healthy and rec.app_state == "serving":
                self.failure_told.discard(rec.tenant_id)  # its ReleaseActivated said `running` again


def probe_due(rec: RunningTenant, last_answer: float | None, idle_for: float, now: float) -> bool:
    """Whether this round asks `rec`'s runtime how it is: every round while it starts, swaps,
    fails or is about to sleep (the idle decision reads the request count of this probe, so it
    must be fresh); every SETTLED_PROBE_S once it serves healthy."""
    if not (rec.healthy and rec.app_state == "serving") or last_answer is None:
        return True
    if now - last_answer >= SETTLED_PROBE_S:
        return True
    return bool(rec.idle_after_s) and idle_for + SETTLED_PROBE_S >= rec.idle_after_s
