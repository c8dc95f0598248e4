"""A warm interpreter per tenant runtime: app workers fork from it instead of starting cold.

A generated app's worker spends ≈ 200 ms of its ≈ 240 ms start importing uvicorn,
starlette, asyncpg and redis (bench/redeploy.py's stage breakdown): most of an update's
time at the edge. The zygote imports them once, then forks a worker per request: a swap
pays only the release's own modules, its lifespan and the health check, and the forked
workers share the zygote's pages copy-on-write.

It is the tenant's own process, started by its reloader inside the tenant's sandbox (same
uid, cgroups, namespaces and Landlock rule as every worker), so a fork crosses no
boundary; it never sees another tenant and holds nothing the workers do not get anyway
(their environment is sent with each fork). It never imports a release.

Protocol (SOCK_SEQPACKET socketpair, one JSON object per packet):
  reloader → zygote: {"argv": [...], "env": {...}, "cwd": ...} with 4 fds attached
                     (stdout, stderr, the shared listener, the worker's control socket)
  zygote → reloader: {"ready": true} once warm; {"forked": pid} per request, in order;
                     {"exited": pid, "code": c} when a worker ends (c < 0: killed by -c)
The child runs `reloader.worker.main(argv + ["--listen-fd", n, "--control-fd", m])` in a
session of its own, exactly what `python -I -m reloader.worker` would have run.

The reloader falls back to a cold start whenever the zygote is not ready or not answering
(reloader.generation), so the zygote can only make a start faster, never fail one.
Workers share the zygote's hash seed (PYTHONHASHSEED); `random` reseeds in each child.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from typing import Any

PRELOAD = ("reloader.worker", "starlette.applications", "starlette.routing", "starlette.requests",
           "starlette.responses", "asyncpg", "redis.asyncio")
MAX_PACKET = 1 << 20  # a request: argv and the tenant's environment
FDS = 4  # stdout, stderr, listener, control
MAX_EARLY = 64  # exits kept for forks not yet registered (one at a time; late ones after a timeout)


class ZygoteUnavailable(RuntimeError):
    """No warm interpreter to fork from right now: start the worker cold."""


# --- the zygote process --------------------------------------------------------------------

def _preload() -> None:
    import gc
    import importlib

    from reloader import hide_platform_packages

    hide_platform_packages()  # before redis.asyncio, as in a cold worker
    for name in PRELOAD:
        with contextlib.suppress(ImportError):  # an app that needs none of these still forks
            importlib.import_module(name)
    gc.collect()
    gc.freeze()  # keep the collector from writing to the preloaded objects' pages in every child


def _send(sock: socket.socket, message: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        sock.send(json.dumps(message, separators=(",", ":")).encode())


def _reap(sock: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _send(sock, {"exited": pid, "code": os.waitstatus_to_exitcode(status)})


def _child(sock: socket.socket, wakeup: tuple[int, int], request: dict[str, Any], fds: list[int]) -> None:
    """In the forked worker: become `python -I -m reloader.worker` and never return."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        sock.close()
        for fd in wakeup:
            os.close(fd)
        os.setsid()
        out, err, listen_fd, control_fd = fds
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(out, 1)
        os.dup2(err, 2)
        for fd in (devnull, out, err):
            os.close(fd)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        argv = [*request["argv"], "--listen-fd", str(listen_fd), "--control-fd", str(control_fd)]
        sys.argv = ["reloader.worker", *argv]
        from reloader import worker

        code = worker.main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - whatever happens, this process must not return to the zygote's loop
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def serve(sock: socket.socket) -> int:
    """The zygote's loop: fork a worker per request, report each one's exit; EOF ends it."""
    import selectors

    from reloader import control

    control.name_process(control.ZYGOTE_NAME)
    _preload()
    wakeup = os.pipe()
    for fd in wakeup:
        os.set_blocking(fd, False)
    signal.set_wakeup_fd(wakeup[1])
    signal.signal(signal.SIGCHLD, lambda *_: None)  # the wake-up fd does the work
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ)
    selector.register(wakeup[0], selectors.EVENT_READ)
    _send(sock, {"ready": True})
    while True:
        for key, _ in selector.select():
            if key.fileobj is not sock:
                with contextlib.suppress(BlockingIOError):
                    os.read(wakeup[0], 512)
                _reap(sock)
                continue
            try:
                data, fds, _flags, _addr = socket.recv_fds(sock, MAX_PACKET, FDS)
            except OSError:
                data, fds = b"", []
            if not data:
                return 0  # the reloader is gone: its workers follow it on their own channels
            try:
                request = json.loads(data)
                if len(fds) != FDS or not isinstance(request, dict):
                    raise ValueError("bad request")
            except ValueError:
                for fd in fds:
                    os.close(fd)
                _send(sock, {"forked": None})
                continue
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                selector.close()
                _child(sock, wakeup, request, fds)
            for fd in fds:
                os.close(fd)
            _send(sock, {"forked": pid})
        _reap(sock)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Fork app workers from a warm interpreter (started by the reloader)")
    parser.add_argument("--socket-fd", type=int, required=True)
    args = parser.parse_args(argv)
    return serve(socket.socket(fileno=args.socket_fd))


# --- the reloader's side -------------------------------------------------------------------

class ForkedWorker:
    """A worker forked by the zygote, looking like the asyncio.subprocess.Process a cold
    start gives: `pid`, `stdout`, `stderr`, `wait()`. It is the zygote's child, so its exit
    status comes from the zygote; should the zygote die first, a pidfd tells the exit (the
    status is then unknown: None)."""

    def __init__(self, pid: int, stdout: asyncio.StreamReader, stderr: asyncio.StreamReader) -> None:
        self.pid, self.stdout, self.stderr = pid, stdout, stderr
        self.returncode: int | None = None
        self._exit: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()

    def _ended(self, code: int | None) -> None:
        if not self._exit.done():
            self.returncode = code
            self._exit.set_result(code)

    def _watch_without_zygote(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            fd = os.pidfd_open(self.pid)
        except ProcessLookupError:
            self._ended(None)
            return

        def gone() -> None:
            loop.remove_reader(fd)
            os.close(fd)
            self._ended(None)
        loop.add_reader(fd, gone)

    async def wait(self) -> int | None:
        return await asyncio.shield(self._exit)


class Zygote:
    """The reloader's handle on its zygote: started in the background, forked from when
    ready, restarted after it dies (the next start is cold meanwhile)."""

    def __init__(self, env: dict[str, str], cwd: str, output: Any) -> None:
        self.env, self.cwd, self.output = env, cwd, output  # output(line, stream): the reloader's log
        self.proc: asyncio.subprocess.Process | None = None
        self.sock: socket.socket | None = None
        self.ready = False
        self.gone = asyncio.Event()  # set when the zygote of the last start() died or stopped answering
        self.last_used = 0.0  # monotonic time of the start or the last fork
        self._forks: asyncio.Queue[int | None] = asyncio.Queue()
        self._children: dict[int, ForkedWorker] = {}
        self._early: dict[int, int | None] = {}  # exits reported before fork() registered the child
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[Any]] = []

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    async def start(self, timeout: float) -> bool:
        """Start the zygote and wait until it is warm; False when it could not be."""
        await self.close()
        self._forks = asyncio.Queue()  # nothing left over from a zygote that died
        self._early = {}
        self.gone = asyncio.Event()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-I", "-m", "reloader.zygote", "--socket-fd", str(theirs.fileno()),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                env=self.env, cwd=self.cwd, pass_fds=(theirs.fileno(),), start_new_session=True)
        except OSError:
            ours.close()
            return False
        finally:
            theirs.close()
        ours.setblocking(False)
        self.sock = ours
        loop = asyncio.get_running_loop()
        ready = loop.create_future()
        self._tasks = [asyncio.create_task(self._read(ready)),
                       *(asyncio.create_task(self._pump(s, n)) for s, n in ((self.proc.stdout, "stdout"),
                                                                             (self.proc.stderr, "stderr")))]
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(ready), timeout)
        self.ready = ready.done() and ready.result()
        self.last_used = time.monotonic()
        if not self.ready:
            await self.close()
        return self.ready

    async def _pump(self, stream: asyncio.StreamReader | None, name: str) -> None:
        while stream is not None and (raw := await stream.readline()):
            self.output(raw.decode(errors="replace").rstrip("\n"), name)

    async def _read(self, ready: asyncio.Future[bool]) -> None:
        loop = asyncio.get_running_loop()
        assert self.sock is not None
        try:
            while data := await loop.sock_recv(self.sock, 4096):
                with contextlib.suppress(ValueError, TypeError):
                    message = json.loads(data)
                    if message.get("ready") and not ready.done():
                        ready.set_result(True)
                    elif "forked" in message:
                        self._forks.put_nowait(message["forked"] if isinstance(message["forked"], int) else None)
                    elif "exited" in message:
                        pid, code = int(message["exited"]), message.get("code")
                        code = code if isinstance(code, int) else None
                        if (child := self._children.pop(pid, None)) is not None:
                            child._ended(code)
                        elif len(self._early) < MAX_EARLY:  # the zygote is the tenant's: it may lie, not grow us
                            self._early[pid] = code
        except OSError:
            pass
        finally:  # the zygote is gone: what it forked is watched another way
            self.ready = False
            self.gone.set()
            if not ready.done():
                ready.set_result(False)
            self._forks.put_nowait(None)
            children, self._children = self._children, {}
            for child in children.values():
                child._watch_without_zygote()

    async def fork(self, argv: list[str], env: dict[str, str], listen_fd: int, control_fd: int,
                   timeout: float = 2.0) -> ForkedWorker:
        """A worker forked from the warm interpreter, or ZygoteUnavailable (start it cold)."""
        if not self.ready or self.sock is None:
            raise ZygoteUnavailable("not ready")
        async with self._lock:
            loop = asyncio.get_running_loop()
            self.last_used = time.monotonic()
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            try:
                payload = json.dumps({"argv": argv, "env": env, "cwd": self.cwd}).encode()
                try:
                    socket.send_fds(self.sock, [payload], [out_w, err_w, listen_fd, control_fd])
                except OSError as exc:
                    raise ZygoteUnavailable(f"send: {exc}") from None
                try:
                    pid = await asyncio.wait_for(self._forks.get(), timeout)
                except asyncio.TimeoutError:
                    self.ready = False  # it does not answer: cold starts until it is restarted
                    self.gone.set()
                    raise ZygoteUnavailable("no answer") from None
            except BaseException:
                for fd in (out_r, err_r):
                    os.close(fd)
                raise
            finally:
                for fd in (out_w, err_w):
                    os.close(fd)
            if pid is None:
                for fd in (out_r, err_r):
                    os.close(fd)
                raise ZygoteUnavailable("fork refused")
            streams = []
            for fd in (out_r, err_r):
                reader = asyncio.StreamReader(limit=2**16)
                await loop.connect_read_pipe(lambda r=reader: asyncio.StreamReaderProtocol(r), os.fdopen(fd, "rb"))
                streams.append(reader)
            child = ForkedWorker(pid, *streams)
            if pid in self._early:
                child._ended(self._early.pop(pid))
            elif self.ready:
                self._children[pid] = child
            else:
                child._watch_without_zygote()
            return child

    async def close(self) -> None:
        self.ready = False
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self.sock is not None:
            self.sock.close()  # EOF: the zygote exits
            self.sock = None
        if self.proc is not None and self.proc.returncode is None:
            try:
                await asyncio.wait_for(self.proc.wait(), 2)
            except asyncio.TimeoutError:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                await self.proc.wait()


if __name__ == "__main__":
    sys.exit(main())
