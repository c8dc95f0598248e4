"""One generation of a tenant's app, seen from the reloader: the worker process, its
control channel, its private health channel, its output and its memory.

The worker inherits the shared listening fd but does not accept on it until told
(`accept`); until then it is reachable only on its private Unix socket, where the
reloader checks `/healthz` answers the new version and a smoke request succeeds.
Output lines are logged tagged with tenant and version (secret values scrubbed) and
the last ones are kept for ReleaseFailed; the requests it reports having served are
added to the runtime's count (reloader.traffic). Memory is watched by sampling the
resident set of the worker and its children: over the limit, the process group is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections import defaultdict, deque
from typing import Any

import structlog

from artifacts.store import LocalRelease
from reloader import control, probe
from reloader.config import RuntimeConfig, Scrubber, app_environment
from reloader.traffic import RequestCount
from reloader.zygote import ForkedWorker, Zygote, ZygoteUnavailable

log = structlog.get_logger(__name__)
KEPT_LINES = 50


class StartFailure(Exception):
    """A new generation did not prove itself; `reason` is ReleaseFailed's code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class AppProcess:
    def __init__(self, release: LocalRelease, cfg: RuntimeConfig, listener: socket.socket, number: int,
                 scrub: Scrubber, sockets_dir: os.PathLike[str], requests: RequestCount,
                 zygote: Zygote | None = None) -> None:
        self.release = release
        self.version = release.version
        self.cfg = cfg
        self.listener = listener
        self.number = number
        self.scrub = scrub
        self.private = os.path.join(sockets_dir, f"g{number}.sock")
        self.lines: deque[str] = deque(maxlen=KEPT_LINES)
        self.exit_reason: str | None = None  # set when we killed it, and why
        self.started_at = time.monotonic()
        self.accepting = False
        self.requests = requests
        self.served = 0  # this worker's running total, as last reported
        self.log = log.bind(tenant_id=cfg.tenant_id, version=self.version, generation=number)
        self._acks: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self._tasks: list[asyncio.Task[Any]] = []
        self.proc: asyncio.subprocess.Process | ForkedWorker | None = None
        self.zygote = zygote
        self.forked = False  # from the zygote (warm), not started cold
        self.exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and not self.exited.done()

    async def spawn(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.private)
        ours, theirs = socket.socketpair()
        listen_fd = self.listener.fileno()
        env = app_environment(self.cfg, self.version)
        try:
            if self.zygote is not None:
                try:
                    self.proc = await self.zygote.fork(self._args(), env, listen_fd, theirs.fileno())
                    self.forked = True
                except ZygoteUnavailable:  # not warm, or not answering: a cold start, as before, with a
                    ours.close()  # channel and a private socket of its own (a fork answering late must
                    theirs.close()  # share neither: it gets EOF on the old channel and exits)
                    ours, theirs = socket.socketpair()
                    self.private = self.private.removesuffix(".sock") + "c.sock"
            if self.proc is None:
                self.proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-I", "-m", "reloader.worker", *self._args(), "--listen-fd", str(listen_fd),
                    "--control-fd", str(theirs.fileno()), stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
                    cwd=self.cfg.work_dir, pass_fds=(listen_fd, theirs.fileno()), start_new_session=True)
        finally:
            theirs.close()
        reader, self.writer = await asyncio.open_unix_connection(sock=ours)
        self.log.info("app.spawned", pid=self.proc.pid, forked=self.forked)
        self._tasks = [asyncio.create_task(c) for c in (
            self._pump(self.proc.stdout, "stdout"), self._pump(self.proc.stderr, "stderr"),
            self._listen(reader), self._watch_memory(), self._wait_exit())]

    def _args(self) -> list[str]:
        return ["--app", str(self.release.path), "--entry", self.release.entry, "--private", self.private,
                "--grace", str(self.cfg.grace), "--idle-close", str(self.cfg.idle_close),
                "--count-every", str(self.cfg.count_interval)]

    async def _pump(self, stream: asyncio.StreamReader | None, name: str) -> None:
        while stream is not None and (raw := await stream.readline()):
            line = self.scrub(raw.decode(errors="replace").rstrip("\n"))
            self.lines.append(line)
            self.log.info("app.output", stream=name, line=line)

    async def _listen(self, reader: asyncio.StreamReader) -> None:
        while (message := await control.receive(reader)) is not None:
            served = message.get("served")
            if isinstance(served, int) and served > self.served:
                self.requests.add(served - self.served)
                self.served = served
            if event := message.get("event"):
                self._acks[event].set()

    async def _watch_memory(self) -> None:
        limit = self.cfg.memory_mb * 1024 * 1024
        checks = 0
        if self.pid is None:
            return
        while self.alive:
            await asyncio.sleep(self.cfg.memory_check_interval)
            # The worker's own RSS is one small /proc read; finding descendants scans every
            # process on the host, so that happens only every DESCENDANTS_EVERY checks (with
            # a hundred idle tenants, scanning each time was their largest CPU cost).
            checks += 1
            rss = resident_bytes(self.pid, descendants=checks % DESCENDANTS_EVERY == 0)
            if rss > limit and self.alive:
                self.log.warning("app.memory_limit_exceeded", rss_mb=rss // 2**20, limit_mb=self.cfg.memory_mb)
                self.kill("memory_limit")
                return

    async def _wait_exit(self) -> None:
        assert self.proc is not None
        code = await self.proc.wait()
        await asyncio.wait(self._tasks[:3], timeout=1)  # keep the last lines and the last served count
        self.log.info("app.exited", pid=self.proc.pid, code=code, reason=self.exit_reason)
        with contextlib.suppress(OSError):
            os.unlink(self.private)
        self.exited.set_result(code)

    async def _until(self, event: str, timeout: float) -> bool:
        """Wait for an ack from the worker; False on timeout or when the process exits."""
        waiter = asyncio.ensure_future(self._acks[event].wait())
        done, _ = await asyncio.wait({waiter, self.exited}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        return waiter in done

    async def _send(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            self.writer.write(control.encode(message))
            await self.writer.drain()

    # --- phase 1: prove itself on the private channel ------------------------------------

    async def prove(self) -> int:
        """Wait for start-up, then health (the new version) and a smoke request; returns
        the health check's duration in ms, or raises StartFailure."""
        if not await self._until("started", self.cfg.start_timeout):
            raise self._failure("start_timeout", f"did not start within {self.cfg.start_timeout:g}s")
        t0 = time.monotonic()
        check = asyncio.ensure_future(self._healthy_within(self.cfg.health_timeout))
        done, _ = await asyncio.wait({check, self.exited}, return_when=asyncio.FIRST_COMPLETED)
        if check not in done:
            check.cancel()
            raise self._failure("health_check", "exited during the health check")
        check.result()
        health_ms = int((time.monotonic() - t0) * 1000)
        try:
            smoke = await probe.get(self.private, self.cfg.smoke_path, self.cfg.health_timeout)
        except probe.ProbeError as exc:
            raise self._failure("smoke_failed", f"smoke request {self.cfg.smoke_path} failed: {exc!r}") from None
        if smoke.status_code >= 500:
            raise self._failure("smoke_failed", f"smoke request {self.cfg.smoke_path} answered {smoke.status_code}")
        return health_ms

    def _failure(self, reason: str, message: str) -> StartFailure:
        if self.exit_reason == "memory_limit":
            return StartFailure("memory_limit", f"exceeded the {self.cfg.memory_mb} MB memory limit")
        if self.exited.done():
            return StartFailure("exited_at_start", f"exited with code {self.exited.result()} during start-up")
        return StartFailure(reason, message)

    async def _healthy_within(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            ok, version, last = await self.health(timeout=min(1.0, max(0.05, deadline - time.monotonic())))
            if ok and version == self.version:
                return
            if ok:
                raise StartFailure("wrong_version", f"/healthz answered version {version!r}, expected {self.version}")
            await asyncio.sleep(0.05)
        raise StartFailure("health_check", f"/healthz not healthy within {timeout:g}s: {last}")

    async def health(self, timeout: float = 1.0) -> tuple[bool, Any, str]:
        """(healthy, version it claims, detail) from one /healthz request on the private channel."""
        try:
            resp = await probe.get(self.private, "/healthz", timeout)
        except probe.ProbeTimeout:
            return False, None, "timed out"
        except probe.ProbeError as exc:
            return False, None, type(exc.__cause__ or exc).__name__
        try:
            version = resp.json().get("version")
        except (ValueError, AttributeError):
            version = None
        return resp.status_code == 200, version, f"status {resp.status_code}"

    # --- phase 2: traffic -----------------------------------------------------------------

    async def accept(self) -> None:
        await self._send({"cmd": "accept"})
        if not await self._until("accepting", 5.0):
            raise self._failure("accept_failed", "did not start accepting on the shared socket")
        self.accepting = True

    async def drain(self) -> None:
        """Stop accepting; the worker answers what it accepted and stays idle (probation)."""
        self._acks["drained"].clear()
        self.accepting = False
        await self._send({"cmd": "drain"})
        await self._until("draining", 2.0)

    async def stop(self, grace: float) -> None:
        """Let the worker drain and exit within `grace`, killing it after that."""
        if self.alive:
            await self._send({"cmd": "exit", "grace": max(0.1, grace - 0.5)})
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.exited), grace)
        if self.alive:
            self.kill("drain_timeout")
        await self.close()

    def kill(self, reason: str) -> None:
        self.exit_reason = self.exit_reason or reason
        if self.alive and self.pid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)

    async def close(self) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.exited), 5)
        for task in self._tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            self.writer.close()


DESCENDANTS_EVERY = 8
PAGE = os.sysconf("SC_PAGE_SIZE")


# The kernel's list of each thread's children (CONFIG_PROC_CHILDREN): reading it costs the
# family only, where psutil's children() reads /proc/<n>/stat of every process it can see
# (outside a sandbox's pid namespace: the whole host, half an idle reloader's Python time).
CHILDREN_LISTS = os.path.exists(f"/proc/self/task/{os.getpid()}/children")


def descendant_pids(pid: int) -> list[int]:
    """The pids below `pid`, from /proc/<pid>/task/<tid>/children, recursively; a process or
    thread that exits meanwhile is skipped (a memory sample, not an inventory), and a pid seen
    twice (reused while the tenant's processes churn) is walked once."""
    seen = {pid}
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{current}/task/{tid}/children", "rb") as fh:
                    kids = [int(k) for k in fh.read().split()]
            except (OSError, ValueError):
                continue
            todo += [k for k in kids if k not in seen]
            seen.update(kids)
    seen.discard(pid)
    return list(seen)


def rss_bytes(pid: int) -> int:
    """Resident memory of one process: /proc/<pid>/statm's second field, what psutil reads
    too (psutil itself is 1.2 MB of every tenant's reloader, for this number). OSError once
    the process is gone."""
    with open(f"/proc/{pid}/statm", "rb") as fh:
        return int(fh.read().split()[1]) * PAGE


def resident_bytes(pid: int, *, descendants: bool = True) -> int:
    """RSS of a process, and of its descendants unless told not to (0 once gone)."""
    try:
        total = rss_bytes(pid)
    except (OSError, ValueError, IndexError):
        return 0
    if not descendants:
        return total
    if CHILDREN_LISTS:
        kids = descendant_pids(pid)
    else:  # a kernel without the children lists: psutil's scan, loaded only here
        import psutil

        try:
            kids = [k.pid for k in psutil.Process(pid).children(recursive=True)]
        except psutil.Error:
            return 0
    for kid in kids:  # one that exited since it was listed counts nothing; the others still count
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += rss_bytes(kid)
    return total
