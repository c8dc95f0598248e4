"""Detached server processes: spawn, health-wait, stop, and port checks.

Servers run in their own session (process group) so `down` can stop each one with
everything it forked, and they outlive the `hostplane up` command that started them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import psutil


class PortInUse(RuntimeError):
    """A configured port is taken by a process hostplane did not start."""


class StartFailed(RuntimeError):
    """A server did not become healthy in time."""


def port_open(host: str, port: int, timeout: float = 0.3) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_free(host: str, port: int, component: str, env_var: str) -> None:
    if port_open(host, port):
        raise PortInUse(
            f"port {port} on {host} (needed by {component}) is already in use by another program; "
            f"stop it or choose another port with {env_var}"
        )


def spawn(
    cmd: Sequence[str],
    log_path: Path,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
    inherit_env: bool = True,
    pass_fds: Sequence[int] = (),
) -> int:
    """Start `cmd` detached, output appended to `log_path`; returns its pid. With
    `inherit_env=False` it gets `env` alone (a tenant runtime: none of our variables);
    `pass_fds` stay open in it under the same numbers (all others are closed)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**(os.environ if inherit_env else {}), **(env or {})},
            cwd=cwd,
            user=user,
            start_new_session=True,
            close_fds=True,
            pass_fds=tuple(pass_fds),
        )
    return proc.pid


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _reap(pid: int) -> None:
    """Collect an exited child of ours so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def stop(pid: int | None, *, sig: int = signal.SIGTERM, timeout: float = 15.0, target: int | None = None) -> None:
    """Stop a process and its whole process group; escalate to SIGKILL after `timeout`.
    With `target`, only that descendant gets `sig` (the real server inside a wrapper that
    would die at once on it, such as a sandbox), and the whole family is waited for."""
    if not pid or not alive(pid):
        return
    try:
        proc = psutil.Process(pid)
        family = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    try:
        if target is not None and target != pid:
            os.kill(target, sig)
        else:
            os.killpg(os.getpgid(pid), sig)
    except (ProcessLookupError, PermissionError):
        proc.send_signal(sig)
    living = _wait_gone(family, timeout)
    for p in living:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    _wait_gone(living, 5)
    _reap(pid)


def _wait_gone(family: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """The members still running after at most `timeout`. An exited process counts as gone
    even before it is reaped: one we did not start (the `hostplane up` that did has exited)
    is a zombie until init collects it, which here took 2 s a process and made `down` take
    27 s instead of 5 (psutil.wait_procs waits for the reaping)."""
    deadline = time.monotonic() + timeout
    while True:
        living = [p for p in family if _running(p)]
        if not living or time.monotonic() >= deadline:
            return living
        time.sleep(0.02)


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_until(check: Callable[[], bool], *, timeout: float, what: str, pid: int | None = None,
               log_path: Path | None = None, interval: float = 0.2) -> None:
    """Poll `check` until true; fail early if `pid` died, quoting the tail of its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if pid is not None and not alive(pid):
            raise StartFailed(f"{what} exited during start-up{_log_tail(log_path)}")
        time.sleep(interval)
    raise StartFailed(f"{what} was not healthy after {timeout:.0f}s{_log_tail(log_path)}")


def _log_tail(log_path: Path | None, lines: int = 15) -> str:
    if not log_path or not log_path.exists():
        return ""
    tail = log_path.read_text(errors="replace").splitlines()[-lines:]
    return f"; last lines of {log_path}:\n" + "\n".join(tail)
