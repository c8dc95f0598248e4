"""Drive a real reloader process from outside: tests and the redeploy benchmark.

`RuntimeUnderTest` starts `python -m reloader` on free loopback ports with a file event
reporter and a log file, publishes sample releases, and reads back events, logs and
`/runtime/healthz`. `Load` runs concurrent keep-alive clients against the app port and
records every failure and which versions each client saw, and when.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

from artifacts.store import ArtifactStore, Pointer
from core.ports import free_ports
from reloader.reporting import read_events
from tests.support.sample_app import SampleApp

FAST = {"poll-interval": 0.1, "start-timeout": 5, "health-timeout": 2, "grace": 5, "probation": 1,
        "verify-retry-for": 0.3, "health-interval": 0.5}


@dataclass
class RuntimeUnderTest:
    tenant: str
    folder: Path
    store: ArtifactStore
    proc: subprocess.Popen[bytes]
    app_port: int
    health_port: int

    @property
    def events_path(self) -> Path:
        return self.folder / "events.jsonl"

    @property
    def log_path(self) -> Path:
        return self.folder / "reloader.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.app_port}"

    def publish(self, app: SampleApp, *, go_live: bool = True) -> Pointer | None:
        self.store.publish_release(self.tenant, app.version, app.zipapp())
        return self.store.set_current(self.tenant, app.version) if go_live else None

    def events(self, event_type: str | None = None) -> list[dict[str, Any]]:
        return [e for e in read_events(self.events_path) if event_type in (None, e["event_type"])]

    def logs(self, event: str | None = None) -> list[dict[str, Any]]:
        return log_records(self.log_path, **({} if event is None else {"event": event}))

    def health(self) -> tuple[int, dict[str, Any]]:
        resp = httpx.get(f"http://127.0.0.1:{self.health_port}/runtime/healthz", timeout=2)
        return resp.status_code, resp.json()

    def serving_version(self) -> int | None:
        try:
            return httpx.get(self.url + "/", timeout=2, headers={"connection": "close"}).json()["version"]
        except (httpx.HTTPError, ValueError, KeyError):
            return None

    def wait_for(self, check: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if result := check():
                return result
            if self.proc.poll() is not None:
                raise AssertionError(f"reloader exited ({self.proc.returncode}) waiting for {what}\n{self.tail()}")
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{self.tail()}")

    async def async_wait_for(self, check: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if result := await asyncio.to_thread(check):
                return result
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{self.tail()}")

    def processes(self, name: str) -> list[psutil.Process]:
        """This runtime's processes named `name` (reloader.control: WORKER_NAME, ZYGOTE_NAME),
        found among all processes by working folder: a worker outlives a zygote that died."""
        found = []
        for p in psutil.process_iter(["name"]):
            try:
                if p.info["name"] == name and p.cwd().startswith(str(self.folder)):
                    found.append(p)
            except psutil.Error:
                continue
        return found

    def tail(self, lines: int = 25) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        return self.proc.returncode


def start_runtime(folder: Path, tenant: str = "acme", *, env_file: Path | None = None,
                  **knobs: Any) -> RuntimeUnderTest:
    """A reloader on free ports, tuned for quick tests unless `knobs` say otherwise
    (names as on the command line, e.g. memory_mb=100)."""
    folder.mkdir(parents=True, exist_ok=True)
    app_port, health_port = free_ports(2)
    options = FAST | {k.replace("_", "-"): v for k, v in knobs.items()}
    cmd = [sys.executable, "-m", "reloader", "--tenant", tenant, "--artifacts", str(folder / "artifacts"),
           "--port", str(app_port), "--health-port", str(health_port), "--work-dir", str(folder / "work"),
           "--events", f"file:{folder / 'events.jsonl'}"]
    cmd += [a for k, v in options.items() for a in (f"--{k}", str(v))]
    if env_file:
        cmd += ["--env-file", str(env_file)]
    with open(folder / "reloader.log", "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    rt = RuntimeUnderTest(tenant, folder, ArtifactStore(folder / "artifacts"), proc, app_port, health_port)
    rt.wait_for(lambda: _health_ok(rt), 20, "runtime health")
    return rt


def log_records(path: Path, **fields: Any) -> list[dict[str, Any]]:
    """The JSON lines of a runtime's log (structlog's) that have these fields, in order."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and all(entry.get(k) == v for k, v in fields.items()):
            out.append(entry)
    return out


def _now() -> str:
    """Wall-clock time as the reloader's log stamps it (UTC), to line a failure up with it."""
    return datetime.now(UTC).strftime("%H:%M:%S.%f")[:-3]


def _health_ok(rt: RuntimeUnderTest) -> bool:
    try:
        return rt.health()[0] == 200
    except (httpx.HTTPError, ValueError):
        return False


@dataclass
class Load:
    """`clients` keep-alive clients hitting `path` back to back until stopped."""

    url: str
    clients: int = 8
    path: str = "/"
    pause: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)  # e.g. the tenant's Host at the edge
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    seen: dict[int, set[int]] = field(default_factory=lambda: defaultdict(set))
    first_seen: dict[int, float] = field(default_factory=dict)  # version → time.time() first served
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> Load:
        self._tasks = [asyncio.create_task(self._client(i)) for i in range(self.clients)]
        return self

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    def all_saw(self, version: int) -> bool:
        return all(version in self.seen[i] for i in range(self.clients))

    async def _client(self, i: int) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=10, headers=self.headers) as client:
            while not self._stop.is_set():
                try:
                    resp = await client.get(self.path)
                    version = resp.json()["version"] if resp.status_code == 200 else None
                    if version is None:
                        self.failures.append(f"{_now()} client {i}: status {resp.status_code}")
                    else:
                        self.ok += 1
                        self.seen[i].add(version)
                        self.first_seen.setdefault(version, time.time())
                except (httpx.HTTPError, ValueError, KeyError) as exc:
                    self.failures.append(f"{_now()} client {i}: {exc!r}")
                    await asyncio.sleep(0.01)  # a refused connection must not spin
                if self.pause:
                    await asyncio.sleep(self.pause)
