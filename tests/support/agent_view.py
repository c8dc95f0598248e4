"""What a test or benchmark reads of a runtime agent from outside: its state file and the
process table (tests/integration/test_scale_to_zero.py, bench/wake.py)."""

from __future__ import annotations

import json
from pathlib import Path

import psutil

from hostplane.local.agent import state as agent_state
from reloader import sandbox


def tenants(home: Path) -> dict:
    try:
        return json.loads(agent_state.state_path(home).read_text())["tenants"]
    except (FileNotFoundError, ValueError, KeyError):
        return {}


def processes_of(home: Path, tenant: str, port: int) -> list[int]:
    """Every process of the tenant, from the process table: its reloader (by command line)
    and, when sandboxed, anything running under its uid."""
    uid = sandbox.uid_for(port) if sandbox.decide().sandboxed else None
    found = []
    for proc in psutil.process_iter(["cmdline", "uids"]):
        try:
            args = agent_state.reloader_args(proc.info["cmdline"] or [])
            if (args and args.get("tenant") == tenant and args.get("owner") == f"agent:{home}") \
                    or (uid is not None and proc.info["uids"].real == uid):
                found.append(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found
