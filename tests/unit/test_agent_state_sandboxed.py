"""How the agent recognises a sandboxed runtime: the launcher it recorded, the bwrap
processes and the reloader inside all carry the reloader's command line; adoption counts
the runtime once, and a graceful stop signals the reloader itself."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import psutil

from hostplane.local.agent import state as agent_state


def test_one_runtime_is_counted_once_and_its_reloader_found_inside():
    owner = f"agent:/tmp/{uuid.uuid4()}"
    tail = ["-m", "reloader", "--tenant", "acme", "--owner", owner]
    inner = [sys.executable, "-c", "import time; time.sleep(30)", *tail]
    # the launcher waits for its child like the sandbox's shell waits for bwrap
    launcher = subprocess.Popen(["/bin/sh", "-c", '"$@"; exit $?', "hostplane-sandbox", *inner])
    try:
        deadline = time.monotonic() + 10
        while not psutil.Process(launcher.pid).children() and time.monotonic() < deadline:
            time.sleep(0.05)
        found = agent_state.our_reloaders(owner)
        assert [(p.pid, a["tenant"]) for p, a in found] == [(launcher.pid, "acme")]
        reloader = agent_state.reloader_process(launcher.pid)
        assert reloader != launcher.pid
        assert psutil.Process(reloader).cmdline()[:2] == [sys.executable, "-c"]
        created = agent_state.create_time(launcher.pid)
        assert agent_state.is_our_reloader(launcher.pid, created, "acme", owner)
        assert not agent_state.is_our_reloader(launcher.pid, created, "other", owner)
    finally:
        for proc in psutil.Process(launcher.pid).children(recursive=True):
            proc.kill()
        launcher.wait(10)


def test_a_bare_reloader_is_its_own_reloader_process():
    owner = f"agent:/tmp/{uuid.uuid4()}"
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "-m", "reloader",
                             "--tenant", "acme", "--owner", owner])
    try:
        time.sleep(0.2)
        assert agent_state.reloader_process(proc.pid) == proc.pid
        assert [p.pid for p, _ in agent_state.our_reloaders(owner)] == [proc.pid]
    finally:
        proc.kill()
        proc.wait(10)


def test_a_recognised_reloaders_command_line_is_read_once_and_a_dead_one_is_not_ours(monkeypatch):
    owner = f"agent:/tmp/{uuid.uuid4()}"
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "-m", "reloader",
                              "--tenant", "acme", "--owner", owner])
    reads = []
    real = psutil.Process.cmdline
    monkeypatch.setattr(psutil.Process, "cmdline", lambda self: reads.append(self.pid) or real(self))
    try:
        # Popen returns once exec has begun, and the new command line is readable only a moment
        # later (the kernel sets it up after closing the CLOEXEC pipe Popen waits on).
        deadline = time.monotonic() + 10
        while not real(psutil.Process(child.pid)) and time.monotonic() < deadline:
            time.sleep(0.01)
        created = agent_state.create_time(child.pid)
        assert all(agent_state.is_our_reloader(child.pid, created, "acme", owner) for _ in range(5))
        assert reads == [child.pid], "read at the first check only"
        assert not agent_state.is_our_reloader(child.pid, created, "other", owner), "another tenant's: read again"
        assert not agent_state.is_our_reloader(child.pid, created + 1, "acme", owner), "another start time"
    finally:
        child.kill()
        child.wait(10)
    assert not agent_state.is_our_reloader(child.pid, created, "acme", owner), "gone: not ours, cache or not"
