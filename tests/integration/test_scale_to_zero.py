"""Scale to zero with the real runtime agent, reloaders, sandbox and PostgreSQL: a tenant
idle for its period has no process left (read from the process table), its port still
accepts, the first requests wait and are served; always-on tenants never sleep; a deploy
and a rollback to a sleeping tenant go live; the agent killed while tenants sleep and while
one wakes loses nothing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg
import httpx
import pytest

from artifacts.store import ArtifactStore
from hostplane.local.agent import state as agent_state
from hostplane.local.ephemeral import start_platform, stop_platform
from services.resources.registry import ensure_schema, pointer_moved, port_range, register_service
from tests.support.agent_view import processes_of, tenants
from tests.support.sample_app import SampleApp

pytestmark = pytest.mark.integration
IDLE_S = 3


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    from core import process
    from core.state import load_state, save_state

    running = start_platform(tmp_path_factory.mktemp("sleep-platform"), "moto")
    home = running.settings.home_dir
    state = load_state(home)
    if (agent := state.components.pop("runtime-agent", None)) is not None:  # we run our own
        process.stop(agent.pid)
        save_state(home, state)
    try:
        yield running
    finally:
        stop_platform(running)


@pytest.fixture(scope="module")
def home(platform) -> Path:
    return platform.settings.home_dir


def start_agent(home: Path) -> subprocess.Popen[bytes]:
    with open(home / "logs" / "agent-sleep.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "hostplane.local.agent", "--home", str(home), "--dsn-from-home",
             "--interval", "0.3", "--grace", "3", "--reloader-arg=--poll-interval=0.5",
             "--reloader-arg=--probation=0.5"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


def agent_pid(home: Path) -> int | None:
    """The pid the running agent wrote into its state file (at the end of its first round)."""
    try:
        return json.loads(agent_state.state_path(home).read_text())["agent"]["pid"]
    except (OSError, ValueError, KeyError):
        return None


async def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := await asyncio.to_thread(check):
            return result
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}: {tenants_seen}")


tenants_seen: dict = {}


def runtime_is(home: Path, tenant: str, runtime: str, version: int | None = None) -> bool:
    rec = tenants(home).get(tenant)
    tenants_seen[tenant] = rec and {k: rec.get(k) for k in ("runtime", "app_state", "live_version", "pid")}
    return bool(rec) and rec["runtime"] == runtime and (version is None or rec["live_version"] == version)


def get_version(url: str) -> int:
    resp = httpx.get(url + "/healthz", timeout=20)
    resp.raise_for_status()
    return resp.json()["version"]


async def test_idle_tenants_sleep_wake_on_requests_and_take_deploys(platform, home):
    conn = await asyncpg.connect(platform.conn.control_dsn)
    store = ArtifactStore(home / "artifacts")
    await ensure_schema(conn)
    block = port_range(platform.settings)  # this platform's ports, not another test's
    ports = {"sleepy": await register_service(conn, "sleepy", None, 256, idle_after_s=IDLE_S, ports=block),
             "awake": await register_service(conn, "awake", None, 256, idle_after_s=0, ports=block)}
    for tenant in ports:
        store.publish_release(tenant, 1, SampleApp(version=1).zipapp())
        store.set_current(tenant, 1)
    url = {t: f"http://127.0.0.1:{p}" for t, p in ports.items()}
    agent = start_agent(home)
    try:
        await wait_for(lambda: runtime_is(home, "sleepy", "running", 1) and runtime_is(home, "awake", "running", 1),
                       60, "both serving release 1")

        # idle for its period: no process at all, the port still accepts (the agent holds it)
        await wait_for(lambda: runtime_is(home, "sleepy", "asleep"), 30, "sleepy asleep")
        assert processes_of(home, "sleepy", ports["sleepy"]) == [], "asleep means no process"
        assert runtime_is(home, "awake", "running"), "--always-on never sleeps"
        assert processes_of(home, "awake", ports["awake"]), "the always-on tenant keeps its runtime"
        with socket.create_connection(("127.0.0.1", ports["sleepy"]), timeout=2):
            pass  # accepted into the backlog: it wakes the tenant, which then sees it closed

        # ... that connection woke it; let it sleep again, then 20 first requests at once
        await wait_for(lambda: runtime_is(home, "sleepy", "asleep") and tenants(home)["sleepy"]["wakes"] == 1,
                       40, "sleepy asleep again after the probe connection")
        t0 = time.monotonic()
        with ThreadPoolExecutor(20) as pool:
            versions = list(pool.map(lambda _: get_version(url["sleepy"]), range(20)))
        woke_in = time.monotonic() - t0
        assert versions == [1] * 20, "every waiting request is served, none refused"
        assert tenants(home)["sleepy"]["wakes"] == 2 and woke_in < 15
        assert len({p for p in processes_of(home, "sleepy", ports["sleepy"])}) >= 1

        # a deploy to a sleeping tenant wakes it to prove the release, which then serves
        await wait_for(lambda: runtime_is(home, "sleepy", "asleep"), 30, "sleepy asleep before the deploy")
        store.publish_release("sleepy", 2, SampleApp(version=2).zipapp())
        store.set_current("sleepy", 2)
        await pointer_moved(conn, "sleepy")
        await wait_for(lambda: runtime_is(home, "sleepy", "running", 2), 30, "release 2 live after the deploy")
        # ... and a rollback to it, asleep again, likewise
        await wait_for(lambda: runtime_is(home, "sleepy", "asleep"), 30, "sleepy asleep before the rollback")
        store.set_current("sleepy", 1)
        await pointer_moved(conn, "sleepy")
        await wait_for(lambda: runtime_is(home, "sleepy", "running", 1), 30, "release 1 live after the rollback")
        assert get_version(url["sleepy"]) == 1

        # the agent killed while the tenant sleeps: a new agent holds its port again, wakes it
        await wait_for(lambda: runtime_is(home, "sleepy", "asleep"), 30, "sleepy asleep before the agent dies")
        agent.send_signal(signal.SIGKILL)
        agent.wait(5)
        agent = start_agent(home)
        await wait_for(lambda: tenants(home).get("sleepy", {}).get("app_state") == "asleep"
                       and socket.socket().connect_ex(("127.0.0.1", ports["sleepy"])) == 0, 20,
                       "the new agent listening for the sleeping tenant")
        assert get_version(url["sleepy"]) == 1
        assert runtime_is(home, "awake", "running") and len(processes_of(home, "awake", ports["awake"])) >= 1

        # the agent killed while the tenant wakes: the request is served, one runtime remains
        await wait_for(lambda: runtime_is(home, "sleepy", "asleep"), 30, "sleepy asleep before the wake")
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(get_version, url["sleepy"])
            await wait_for(lambda: tenants(home)["sleepy"]["pid"], 10, "the wake to start a runtime")
            agent.send_signal(signal.SIGKILL)
            agent.wait(5)
            agent = start_agent(home)
            assert await asyncio.to_thread(pending.result, 30) == 1
        await wait_for(lambda: len(agent_state.our_reloaders(f"agent:{home}")) == 2 or
                       runtime_is(home, "sleepy", "asleep"), 30, "one reloader per tenant")
        reloaders = [args["tenant"] for _, args in agent_state.our_reloaders(f"agent:{home}")]
        assert sorted(reloaders) in (["awake", "sleepy"], ["awake"])
    finally:
        # Its stop signals are caught from its first lines on, not before the interpreter runs
        # them: a SIGTERM sent the instant it was started would kill it (exit -15), as it
        # would any process. So it is asked to stop once its first round has saved its state.
        with contextlib.suppress(AssertionError):
            await wait_for(lambda: agent_pid(home) == agent.pid, 20, "the agent's first round")
        agent.send_signal(signal.SIGTERM)
        code = agent.wait(30)
        await conn.execute("DELETE FROM runtime_services")
        await conn.close()
    assert code == 0
    assert agent_state.our_reloaders(f"agent:{home}") == []
