"""The tenant runtime: owns the listening socket and moves it from app generation to
app generation without dropping a request.

One socket for the app's whole life (never SO_REUSEPORT sockets per process: closing
one resets the connections queued on it). A release goes live in two phases: the new
generation starts beside the old one and proves itself privately (reloader.generation);
only then does it accept on the shared socket, and the old one stops accepting and
drains. The old one stays idle through a probation period so an early death of the new
one is reverted at once. A crashing live app restarts with exponential backoff; after
`crash_loop_threshold` crashes in a row it falls back to the last good release.

`current.json` is polled (open+read, never stat); only a higher generation is acted on,
the newest pending one wins, and changes of generation happen one at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import tempfile
import time
from typing import Any

import structlog

from artifacts.errors import ArtifactError
from artifacts.store import ArtifactStore, LocalRelease, Pointer
from reloader.config import RuntimeConfig, Scrubber, app_environment
from reloader.generation import AppProcess, StartFailure
from reloader.good import GoodReleases
from reloader.metrics import RuntimeMetrics
from reloader.reporting import Report, Reporter
from reloader.traffic import RequestCount
from reloader.unavailable import Unavailable
from reloader.zygote import Zygote

log = structlog.get_logger(__name__)
HANG_PROBES = 5  # live health probes timing out in a row before a hung app is restarted


def backoff(crashes: int, initial: float, maximum: float) -> float:
    """Delay before restart number `crashes` (1-based): initial, 2x, 4x, ... capped."""
    return min(maximum, initial * 2 ** max(0, crashes - 1))


def open_listener(host: str, port: int) -> socket.socket:
    """The one listening socket of the app, kept open by the reloader for its whole life."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # rebind despite TIME_WAIT; not REUSEPORT
    sock.bind((host, port))
    sock.listen(1024)
    sock.set_inheritable(False)  # handed to workers explicitly (pass_fds), never leaked
    return sock


def adopt_listener(fd: int) -> socket.socket:
    """The listening socket the launcher handed over (the local agent owns every tenant's, so
    connections queue on it while no runtime runs and wake the next one). Refused unless it
    is a listening TCP socket: anything else would hang or misroute the app."""
    sock = socket.socket(fileno=fd)
    try:
        if sock.type != socket.SOCK_STREAM or sock.family not in (socket.AF_INET, socket.AF_INET6) \
                or not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            raise ValueError(f"--listen-fd {fd} is not a listening TCP socket")
    except (OSError, ValueError):
        sock.detach()
        raise
    sock.set_inheritable(False)
    return sock


class Runtime:
    def __init__(self, cfg: RuntimeConfig, store: ArtifactStore, reporter: Reporter) -> None:
        self.cfg, self.store, self.reporter, self.requests = cfg, store, reporter, RequestCount()
        self.metrics = RuntimeMetrics(cfg.tenant_id)
        self.log = log.bind(tenant_id=cfg.tenant_id)
        self.scrub = Scrubber(cfg.tenant_env)
        self.listener = adopt_listener(cfg.listen_fd) if cfg.listen_fd is not None \
            else open_listener(cfg.host, cfg.port)
        self.port = self.listener.getsockname()[1]
        self.unavailable = Unavailable(self.listener)  # answers 503 while nothing can serve
        self.sockets_dir = tempfile.mkdtemp(prefix="hpr-")  # short path: AF_UNIX names are ≤107 bytes
        self.live: AppProcess | None = None
        self.standby: AppProcess | None = None  # previous generation, idle, during probation
        self.good = GoodReleases(store, cfg.tenant_id, cfg.work_dir, cfg.cache_dir)
        self.lock = asyncio.Lock()
        self.wake = asyncio.Event()
        self.stopping = asyncio.Event()
        self.poked = asyncio.Event()  # look at current.json now (SIGUSR1: the pointer just moved)
        self.wanted: Pointer | None = None
        self.handled_generation = 0
        self.seen_at: dict[int, float] = {}
        self.number = self.crashes = self.restarts = 0  # generations started, crashes in a row, restarts
        self.state = "no_release"
        self.started = time.monotonic()
        self.polled_at = 0.0
        self.pointer_error: str | None = None
        self.last_failure: dict[str, Any] | None = None
        self.last_exit: dict[str, Any] | None = None
        self.app_health: dict[str, Any] = {"healthy": False, "detail": "no app running"}
        self._tasks: list[asyncio.Task[Any]] = []
        # Started after a deploy went live (never on a first start: a wake must not share the CPU).
        self.zygote = Zygote(app_environment(cfg, 0), str(cfg.work_dir), self._zygote_output) if cfg.zygote else None
        self._zygote_starting: asyncio.Task[Any] | None = None

    async def run(self) -> None:
        await asyncio.to_thread(self.good.load)
        self._tasks = [asyncio.create_task(c) for c in (self._poll(), self._swap_loop(), self._probe_live())]
        await self.stopping.wait()

    # --- watching current.json --------------------------------------------------------------

    async def _poll(self) -> None:
        while not self.stopping.is_set():
            self.polled_at = time.monotonic()
            try:
                pointer = await asyncio.to_thread(self.store.read_current, self.cfg.tenant_id)
                self.pointer_error = None
            except (ArtifactError, OSError) as exc:
                if str(exc) != self.pointer_error:
                    self.log.warning("pointer.unreadable", error=str(exc))
                pointer, self.pointer_error = None, str(exc)
            if pointer and pointer.generation > self.handled_generation:
                self.seen_at.setdefault(pointer.generation, time.monotonic())
                if self.wanted is None or pointer.generation > self.wanted.generation:
                    self.wanted = pointer  # coalesce: only the newest pending pointer counts
                    self.wake.set()
            await self._next_look()

    async def _next_look(self) -> None:
        """Until the next read of current.json: `poll_interval`, or sooner when poked."""
        await self._stopping_within(self.cfg.poll_interval, self.poked)
        self.poked.clear()

    def poke(self) -> None:
        """The pointer moved (the runtime agent relays the migrator's notice): read it now.
        The poll stays, for a notice that never comes (EFS on AWS sends none)."""
        self.poked.set()

    async def _swap_loop(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            pointer, self.wanted = self.wanted, None
            if pointer is None or pointer.generation <= self.handled_generation:
                continue
            async with self.lock:
                try:
                    await self._activate(pointer)
                except Exception as exc:  # a bug must not stop all future swaps; never retry it blindly
                    self.log.exception("release.internal_error", version=pointer.version)
                    self._handled(pointer)
                    await self._failed(pointer.version, "start", "internal_error", repr(exc)[:500], [],
                                       pointer.correlation_id)

    async def _activate(self, pointer: Pointer) -> None:
        seen = self.seen_at.get(pointer.generation, time.monotonic())
        live = self.live
        if live and live.release.sha256 == pointer.sha256 and live.version == pointer.version:
            self._handled(pointer)  # a new generation naming what already runs
            return
        try:
            release = await asyncio.to_thread(self.store.fetch, self.cfg.tenant_id, pointer.version,
                                              pointer.sha256, self.cfg.cache_dir)
        except ArtifactError as exc:
            if time.monotonic() - seen < self.cfg.verify_retry_for:
                self.log.info("release.not_ready", version=pointer.version, reason=exc.reason)
                return  # the next poll offers this generation again (a writer may still be busy)
            self._handled(pointer)
            await self._failed(pointer.version, "artifact", exc.reason, str(exc), [], pointer.correlation_id)
            return
        self.log.info("release.seen", version=pointer.version, generation=pointer.generation)
        served_before = self.live is None and release in self.good
        started = await self._start(release, seen=seen, correlation_id=pointer.correlation_id,
                                    failure_is_crash=served_before)
        self._handled(pointer)
        if not started and served_before and self.live is None:
            await self._restart_failed(release)

    def _handled(self, pointer: Pointer) -> None:
        self.handled_generation = max(self.handled_generation, pointer.generation)
        self.seen_at = {g: t for g, t in self.seen_at.items() if g > self.handled_generation}

    # --- starting a generation and moving traffic to it -------------------------------------

    async def _start(self, release: LocalRelease, *, seen: float, correlation_id: str | None = None,
                     announce: bool = True, failure_is_crash: bool = False, warm: bool = True) -> bool:
        """Two-phase start; True when `release` serves. Failures leave the old one live.
        `announce`: report the outcome (a restart of the same release reports neither);
        `failure_is_crash`: a release that served before (e.g. the first start after a
        sleep) failing is the caller's crash to handle, not a refused release, but its
        success is still announced (the runtime is running again); `warm`: fork it from
        the zygote when there is one ready (else a cold start)."""
        self.number += 1
        new = AppProcess(release, self.cfg, self.listener, self.number, self.scrub, self.sockets_dir, self.requests,
                         self.zygote if warm else None)
        if self.live is None:
            self.state = "starting"
        promoted = False
        try:
            await new.spawn()
            health_ms = await new.prove()
            await self.unavailable.stop()  # from here on the new generation takes the connections
            await new.accept()
            promoted = True
        except Exception as exc:
            failure = exc if isinstance(exc, StartFailure) else StartFailure("spawn_failed", repr(exc))
            self.log.warning("release.refused", version=release.version, reason=failure.reason, error=str(failure))
            if announce and not failure_is_crash:
                await self._failed(release.version, "start", failure.reason, str(failure), list(new.lines),
                                   correlation_id)
            return False
        finally:
            if not promoted:
                new.kill("refused")
                await new.close()
                if self.live is None:
                    self.state = "failed" if announce and not failure_is_crash else "crashed"
                    if self.state == "failed":  # nothing serves until a new release: say so at once
                        self.unavailable.start(f"release {release.version} failed to start")
        old, self.live = self.live, new
        new.exited.add_done_callback(lambda _f: self._exited(new))
        self.state, self.app_health = "serving", {"healthy": True, "detail": "passed start-up checks"}
        if old is not None and old.alive:
            await old.drain()
            self._begin_probation(old)
        elif old is not None:
            asyncio.create_task(old.close())  # died while this one was starting
        swap_ms = int((time.monotonic() - seen) * 1000)
        if old is not None:  # a deploy (or a rollback): more may follow
            self._warm_zygote()
        self.metrics.swapped(swap_ms / 1000)
        self.log.info("release.live", version=release.version, swap_ms=swap_ms, health_ms=health_ms,
                      pid=new.pid, previous=old.version if old else None, forked=new.forked)
        if announce:
            await self.reporter.report(Report("ReleaseActivated", version=release.version, sha256=release.sha256,
                                              swap_ms=swap_ms, health_ms=health_ms),
                                       correlation_id=correlation_id)
        return True

    async def _failed(self, version: int, stage: str, reason: str, error: str, lines: list[str],
                      correlation_id: str | None = None) -> None:
        self.last_failure = {"version": version, "stage": stage, "reason": reason, "error": error[:500]}
        self.metrics.release_failed()
        await self.reporter.report(Report("ReleaseFailed", version=version, stage=stage, reason=reason,
                                          error=error or reason, retryable=False, last_log_lines=lines),
                                   correlation_id=correlation_id)

    def _begin_probation(self, old: AppProcess) -> None:
        if self.standby is not None:  # superseded while alive: it served, call it good
            self._retire(self.standby)
        self.standby = old
        self.good.keep(old.release)
        asyncio.create_task(self._end_probation(old))

    async def _end_probation(self, old: AppProcess) -> None:
        await asyncio.sleep(self.cfg.probation)
        if self.standby is old:
            self.standby = None
            if self.live is not None and self.live.alive:
                self.good.keep(self.live.release)
            self._retire(old)

    def _retire(self, proc: AppProcess) -> None:
        asyncio.create_task(proc.stop(self.cfg.grace))

    # --- the zygote: a warm interpreter the next generation forks from (reloader.zygote) ------

    def _warm_zygote(self) -> None:
        """A release was deployed: (re)start the zygote in the background if it is not warm, so
        the next deploy forks. Not on a first start (a wake, a restart): a tenant nobody
        deploys to keeps no zygote, and a wake never shares the CPU with one."""
        if self.zygote is None or self.zygote.ready or self.stopping.is_set():
            return
        if self._zygote_starting is None or self._zygote_starting.done():
            self._zygote_starting = asyncio.create_task(self._keep_zygote())

    async def _keep_zygote(self) -> None:
        """Start the zygote, then retire it after `zygote_idle` seconds without a fork: its
        memory (≈ 20 MB, bench/runtime_memory.py) is paid only while the tenant is being
        worked on."""
        zygote = self.zygote
        assert zygote is not None
        if await self._stopping_within(self.cfg.zygote_delay):  # the new generation's first requests go first
            return
        t0 = time.monotonic()
        if not await zygote.start(self.cfg.start_timeout):
            self.log.warning("zygote.unavailable", detail="workers start cold")
            return
        self.log.info("zygote.ready", pid=zygote.pid, ms=int((time.monotonic() - t0) * 1000))
        while zygote.ready:
            idle = time.monotonic() - zygote.last_used
            if idle >= self.cfg.zygote_idle:
                await self._retire_zygote(round(idle))
                return
            if await self._stopping_within(self.cfg.zygote_idle - idle, zygote.gone):  # or the zygote died
                return

    async def _retire_zygote(self, idle_s: int) -> None:
        """A live worker forked from the zygote keeps the pages it shared with it, the
        preloaded modules its app may never use among them: it is replaced by a cold start
        of the same release first (a swap like any other, unannounced; should it fail, the
        forked one keeps serving), then the zygote exits."""
        assert self.zygote is not None
        async with self.lock:
            live = self.live
            if live is not None and live.forked and live.alive and not self.stopping.is_set():
                await self._start(live.release, seen=time.monotonic(), announce=False, warm=False)
            await self.zygote.close()
        self.log.info("zygote.retired", idle_s=idle_s)

    async def _stopping_within(self, seconds: float, also: asyncio.Event | None = None) -> bool:
        """Wait `seconds`, or less when stopping (True) or `also` is set (False)."""
        waits = [asyncio.ensure_future(e.wait()) for e in (self.stopping, also) if e is not None]
        try:
            await asyncio.wait(waits, timeout=max(0.0, seconds), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        return self.stopping.is_set()

    def _zygote_output(self, line: str, stream: str) -> None:
        self.log.info("zygote.output", stream=stream, line=self.scrub(line))

    # --- when the live app dies -------------------------------------------------------------

    def _exited(self, proc: AppProcess) -> None:
        if self.stopping.is_set():
            return
        if proc is self.standby:
            self.standby = None
        elif proc is self.live:
            asyncio.create_task(self._live_died(proc))

    async def _live_died(self, proc: AppProcess) -> None:
        async with self.lock:
            if proc is not self.live or self.stopping.is_set():
                return
            code, reason = proc.exited.result(), proc.exit_reason or "crashed"
            uptime = time.monotonic() - proc.started_at
            self.live, self.app_health = None, {"healthy": False, "detail": f"app exited ({reason})"}
            asyncio.create_task(proc.close())
            self.last_exit = {"version": proc.version, "code": code, "reason": reason, "uptime_s": round(uptime, 2),
                              "last_log_lines": list(proc.lines)[-10:]}
            self.log.warning("app.died", version=proc.version, code=code, reason=reason, uptime_s=round(uptime, 2))
            standby, self.standby = self.standby, None
            if standby is not None and standby.alive:
                if await self._revert_to(standby, proc):
                    return
                self._retire(standby)
            self.crashes = 1 if uptime >= self.cfg.stable_after else self.crashes + 1
            release = await self._fallback_if_looping(proc.release, list(proc.lines))
            delay = backoff(max(1, self.crashes), self.cfg.backoff_initial, self.cfg.backoff_max)
            self.state = "restarting"
            self.log.warning("app.restart_scheduled", version=release.version, delay_s=delay, crashes=self.crashes)
            await self.reporter.report(Report(
                "AppCrashed", version=proc.version, reason=reason if reason in ("memory_limit", "hung") else "crashed",
                exit_code=code if isinstance(code, int) else None, uptime_ms=int(uptime * 1000),
                crashes_in_a_row=self.crashes, restart_in_ms=int(delay * 1000),
                last_log_lines=list(proc.lines)[-10:]))
        asyncio.create_task(self._restart_later(release, delay, announce=release is not proc.release))

    async def _fallback_if_looping(self, release: LocalRelease, lines: list[str]) -> LocalRelease:
        """After `crash_loop_threshold` crashes in a row, the last good release other than this one."""
        fallback = self.good.other_than(release)
        if self.crashes < self.cfg.crash_loop_threshold or fallback is None:
            return release
        await self._failed(release.version, "running", "crash_loop",
                           f"crashed {self.crashes} times in a row; falling back to release {fallback.version}",
                           lines)
        self.good.drop(release)
        self.crashes = 0
        return fallback

    async def _restart_failed(self, release: LocalRelease) -> None:
        """A release that served before (this runtime's, or one before its sleep) will not start
        now: a crash like any other, with the same backoff and fallback, not a refused release."""
        self.crashes = crashes = self.crashes + 1
        target = await self._fallback_if_looping(release, [])
        delay = backoff(max(1, self.crashes), self.cfg.backoff_initial, self.cfg.backoff_max)
        self.state = "restarting"
        self.log.warning("app.restart_scheduled", version=target.version, delay_s=delay, crashes=crashes)
        await self.reporter.report(Report("AppCrashed", version=release.version, reason="crashed", exit_code=None,
                                          uptime_ms=0, crashes_in_a_row=crashes, restart_in_ms=int(delay * 1000)))
        asyncio.create_task(self._restart_later(target, delay, announce=target is not release))

    async def _revert_to(self, standby: AppProcess, dead: AppProcess) -> bool:
        """The new generation died in probation: the idle old one accepts again at once."""
        t0 = time.monotonic()
        try:
            await standby.accept()
        except StartFailure:
            return False
        self.live, self.state = standby, "serving"
        self.app_health = {"healthy": True, "detail": "reverted to the previous release"}
        standby.exited.add_done_callback(lambda _f: self._exited(standby))
        self.log.warning("release.reverted", version=standby.version, failed_version=dead.version)
        await self._failed(dead.version, "probation", "crashed_in_probation",
                           f"exited during probation; release {standby.version} serves again", list(dead.lines))
        await self.reporter.report(Report("ReleaseActivated", version=standby.version, sha256=standby.release.sha256,
                                          swap_ms=int((time.monotonic() - t0) * 1000), health_ms=0))
        return True

    async def _restart_later(self, release: LocalRelease, delay: float, *, announce: bool) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), delay)
        async with self.lock:
            if self.live is not None or self.stopping.is_set():
                return  # a new release went live meanwhile, or we are shutting down
            self.restarts += 1
            self.metrics.app_restarted()
            if await self._start(release, seen=time.monotonic(), announce=announce):
                return
            await self._restart_failed(release)

    async def _probe_live(self) -> None:
        """Keep the app's own health current for /runtime/healthz; restart an app that hangs."""
        timeouts = 0
        while not self.stopping.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), self.cfg.health_interval)
            live = self.live
            if live is None or not live.alive:
                continue
            ok, version, detail = await live.health(timeout=min(2.0, self.cfg.health_interval))
            if live is self.live:
                self.app_health = {"healthy": ok and version == live.version, "detail": detail,
                                   "version": version}
            timeouts = timeouts + 1 if detail == "timed out" else 0
            if timeouts >= HANG_PROBES:
                self.log.warning("app.hung", version=live.version)
                live.kill("hung")
                timeouts = 0

    # --- state and shutdown -------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        live = self.live
        poll_age = time.monotonic() - self.polled_at
        return {
            "status": "ok" if poll_age < max(10.0, 5 * self.cfg.poll_interval) else "stalled",
            "tenant_id": self.cfg.tenant_id,
            "runtime": {"uptime_s": round(time.monotonic() - self.started, 1), "poll_age_s": round(poll_age, 2),
                        "generation": self.handled_generation, "port": self.port,
                        "pointer_error": self.pointer_error, "requests_served": self.requests.total},
            "app": {"state": self.state, "live_version": live.version if live else None,
                    "pid": live.pid if live else None, "healthy": bool(live) and self.app_health["healthy"],
                    "health": self.app_health, "restarts": self.restarts, "crashes_in_a_row": self.crashes,
                    "last_exit": self.last_exit, "last_failure": self.last_failure,
                    "memory_limit_mb": self.cfg.memory_mb},
        }

    async def shutdown(self) -> None:
        """SIGTERM: stop polling, drain every generation, all within the grace period."""
        self.stopping.set()
        self.state = "stopping"
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # New connections are refused from now on (or, when the agent owns the socket, they
        # wait in its backlog and wake the next runtime); workers close their copies.
        await self.unavailable.stop()
        self.listener.close()
        procs = [p for p in (self.live, self.standby) if p is not None]
        await asyncio.gather(*(p.stop(self.cfg.grace - 0.5) for p in procs), return_exceptions=True)
        if self._zygote_starting is not None:
            self._zygote_starting.cancel()
        if self.zygote is not None:
            await self.zygote.close()
        shutil.rmtree(self.sockets_dir, ignore_errors=True)
        await self.reporter.close()
