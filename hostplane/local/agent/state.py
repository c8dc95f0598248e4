"""The local runtime agent's state file: `<home>/runtime/agent.json`.

It is both the agent's memory (which reloader process serves which tenant, so a
restarted agent re-adopts its children instead of starting duplicates) and the view
`hostplane status --json` shows. A pid alone is not proof: pids are reused, so a child
is recognised by pid + process start time + its command line.

    {"version": 1,
     "agent": {"pid": 10, "create_time": 1764000000.5, "updated_at": "...", "artifacts": "..."},
     "tenants": {"acme": {"pid": 11, "create_time": 1764000001.2, "app_port": 41001,
                          "health_port": 41002, "app_url": "http://127.0.0.1:41001",
                          "health_url": "http://127.0.0.1:41002/runtime/healthz",
                          "live_version": 3, "healthy": true, "app_state": "serving",
                          "restarts": 0, "memory_mb": 512, "started_at": "...", "log": "...",
                          "fingerprint": "...", "sandboxed": true, "uid": 241001}},
     "reports": {"acme": {"inode": 123, "offset": 4096, "published": 3, "refused": 0}}}

`agent.sandbox` says whether tenants run sandboxed (reloader.sandbox): {"requested":
"auto", "mode": "bwrap" | "off", "reason": why not}. A sandboxed reloader's recorded pid
is its launcher (the shell that became bwrap), whose command line carries the reloader's.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

STATE_VERSION = 1


def state_path(home: Path) -> Path:
    return Path(home) / "runtime" / "agent.json"


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class RunningTenant:
    """The agent's record of one tenant's runtime process: ports, pid, restarts, live version."""

    tenant_id: str
    app_port: int
    health_port: int
    pid: int | None = None
    create_time: float | None = None
    host: str = "127.0.0.1"
    memory_mb: int = 512
    fingerprint: str = ""
    started_at: str | None = None
    restarts: int = 0
    log: str | None = None
    live_version: int | None = None
    healthy: bool = False
    app_state: str = "starting"
    sandboxed: bool = False
    uid: int | None = None
    asleep: bool = False  # scaled to zero: no process, the agent holds its socket (agent.sleep)
    slept_at: float | None = None  # wall clock, for asleep_s across agent restarts
    wakes: int = 0
    idle_after_s: int = 0  # in force for this tenant (0: never sleeps)
    requests_served: int | None = None  # the runtime's running total (/runtime/healthz)

    @property
    def runtime(self) -> str:
        """running | asleep | starting | failed: what `tenant show` and the dashboard say."""
        if self.asleep:  # a sleeper whose port someone else took cannot be woken by a request
            return "failed" if self.app_state == "port_taken" else "asleep"
        if not self.pid:
            failed = self.app_state == "port_taken" or (self.restarts and self.app_state == "restarting")
            return "failed" if failed else "starting"
        if self.app_state in ("failed", "crashed", "port_taken"):
            return "failed"
        return "running" if self.healthy or self.app_state == "serving" else "starting"

    @property
    def app_url(self) -> str:
        return f"http://{self.host}:{self.app_port}"

    @property
    def health_url(self) -> str:
        return f"http://{self.host}:{self.health_port}/runtime/healthz"

    def to_json(self) -> dict[str, Any]:
        # Every field is a scalar: a shallow read, not dataclasses.asdict's deep copy (the agent
        # saves its state on each start and round; at 1,000 tenants that copy was most of it).
        return {name: getattr(self, name) for name in self.__dataclass_fields__} | {
            "app_url": self.app_url, "health_url": self.health_url, "runtime": self.runtime}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunningTenant:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass
class AgentState:
    tenants: dict[str, RunningTenant] = field(default_factory=dict)
    agent: dict[str, Any] = field(default_factory=dict)
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)  # agent.reports.Cursor per tenant
    facts: list[str] = field(default_factory=list)  # sleep/wake envelopes not yet on the bus

    def to_json(self) -> str:
        # No indent: json's C encoder serves only compact output, and the agent writes this file
        # synchronously on every start and round (35 ms at 1,000 tenants indented, a wake's
        # largest cost; `jq . agent.json` reads it).
        return json.dumps({"version": STATE_VERSION, "agent": self.agent,
                           "tenants": {t: r.to_json() for t, r in sorted(self.tenants.items())},
                           "reports": dict(sorted(self.reports.items())), "facts": self.facts},
                          separators=(",", ":"))


def load(home: Path) -> AgentState:
    try:
        data = json.loads(state_path(home).read_text())
    except (FileNotFoundError, ValueError):
        return AgentState()
    return AgentState(tenants={t: RunningTenant.from_json(r) for t, r in data.get("tenants", {}).items()},
                      agent=data.get("agent", {}), reports=data.get("reports", {}), facts=data.get("facts", []))


def save(home: Path, state: AgentState) -> None:
    """Atomic replace, so `status` never reads half a file."""
    path = state_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(state.to_json())
    os.replace(tmp, path)


def create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


# Processes already recognised by their command line, by (pid, start time): a pid and its
# start time name one process for its whole life, so its command line is read once, not at
# every round (at 100 running tenants that read and parse was a fifth of the agent's CPU).
_RECOGNISED: dict[tuple[int, float], tuple[str, str]] = {}
RECOGNISED_MAX = 4096


def is_our_reloader(pid: int | None, started: float | None, tenant_id: str, owner: str) -> bool:
    """True when `pid` is still the reloader we started for `tenant_id` (not a reused pid)."""
    if not pid or started is None:
        return False
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():  # status and start time from one read of /proc/<pid>/stat
            if proc.status() == psutil.STATUS_ZOMBIE or abs(proc.create_time() - started) > 0.05:
                return False
        if _RECOGNISED.get((pid, started)) == (tenant_id, owner):
            return True
        found = reloader_args(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    ours = found is not None and found.get("tenant") == tenant_id and found.get("owner") == owner
    if ours:
        if len(_RECOGNISED) >= RECOGNISED_MAX:
            _RECOGNISED.pop(next(iter(_RECOGNISED)))  # the oldest: long gone, most likely
        _RECOGNISED[(pid, started)] = (tenant_id, owner)
    return ours


def reloader_args(cmdline: list[str]) -> dict[str, str] | None:
    """`--name value` pairs of a `python -m reloader` command line, or None for anything else."""
    if "-m" not in cmdline or "reloader" not in cmdline[cmdline.index("-m") + 1:][:1]:
        return None
    args = {}
    for key, value in zip(cmdline, cmdline[1:], strict=False):
        if re.fullmatch(r"--[a-z-]+", key):
            args[key[2:]] = value
    return args


def our_reloaders(owner: str) -> list[tuple[psutil.Process, dict[str, str]]]:
    """Every live reloader launched by this agent home, tracked or not: one entry per
    runtime, its outermost process (a sandbox's launcher, its bwrap init and the reloader
    inside all carry the reloader's command line)."""
    found: dict[int, tuple[psutil.Process, dict[str, str]]] = {}
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            args = reloader_args(proc.info["cmdline"] or [])
            if args and args.get("owner") == owner and proc.status() != psutil.STATUS_ZOMBIE:
                found[proc.pid] = (proc, args)
    out = []
    for pid, (proc, args) in found.items():
        with contextlib.suppress(psutil.NoSuchProcess):
            if not any(parent.pid in found for parent in proc.parents()):
                out.append((proc, args))
    return out


def reloader_process(pid: int) -> int | None:
    """The reloader itself under the process `pid` we started: `pid` when it runs bare,
    the python process inside the sandbox otherwise (bwrap dies at once on SIGTERM and takes
    the sandbox with it; the reloader drains first)."""
    try:
        proc = psutil.Process(pid)
        for candidate in (proc, *proc.children(recursive=True)):
            cmdline = candidate.cmdline()
            if cmdline and reloader_args(cmdline) is not None \
                    and Path(cmdline[0]).name not in ("sh", "bwrap"):
                return candidate.pid
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return None
