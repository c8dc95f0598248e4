"""The local runtime agent against a real platform (PostgreSQL for desired services, moto
for the event bus): one reloader per tenant, re-adoption after the agent is killed,
restart of a dead reloader, removal of a deregistered tenant, clean shutdown."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import httpx
import pytest

from artifacts.store import ArtifactStore
from core.aws import aws_client
from hostplane.local.ephemeral import start_platform, stop_platform
from core.process import alive
from core.ports import free_port, free_ports
from hostplane.local.agent import state as agent_state
from hostplane.local.agent.agent import Agent
from reloader import sandbox
from services.resources.registry import deregister_service, ensure_schema, port_range, register_service
from tests.support.runtime_harness import Load
from tests.support.sample_app import SampleApp

pytestmark = pytest.mark.integration
TENANTS = ("alpha", "beta")


def _stop_platform_agent(home: Path) -> None:
    from core import process
    from core.state import load_state, save_state

    state = load_state(home)
    agent = state.components.pop("runtime-agent", None)
    if agent is not None:
        process.stop(agent.pid)
        save_state(home, state)


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    running = start_platform(tmp_path_factory.mktemp("agent-platform"), "moto")
    _stop_platform_agent(running.settings.home_dir)  # these tests run and kill agents of their own
    try:
        yield running
    finally:
        stop_platform(running)


@pytest.fixture(scope="module")
def home(platform) -> Path:
    return platform.settings.home_dir


def start_agent(home: Path) -> subprocess.Popen[bytes]:
    with open(home / "logs" / "agent-test.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "hostplane.local.agent", "--home", str(home), "--dsn-from-home", "--interval", "0.3",
             "--grace", "3", "--reloader-arg=--poll-interval=0.2"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


def state(home: Path) -> dict:
    try:
        return json.loads(agent_state.state_path(home).read_text())
    except (FileNotFoundError, ValueError):
        return {"tenants": {}}


def reloaders_by_tenant(home: Path) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for proc, args in agent_state.our_reloaders(f"agent:{home}"):
        out.setdefault(args["tenant"], []).append(proc.pid)
    return out


async def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := await asyncio.to_thread(check):
            return result
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def all_serving(home: Path, tenants, version: int) -> bool:
    entries = state(home)["tenants"]
    return all(t in entries and entries[t]["healthy"] and entries[t]["live_version"] == version for t in tenants)


async def test_agent_converges_survives_its_own_death_and_cleans_up(platform, home):
    conn = await asyncpg.connect(platform.conn.control_dsn)
    store = ArtifactStore(home / "artifacts")
    env_file = home / "tenant-env.json"
    env_file.write_text(json.dumps({"GREETING": "hello"}))
    await ensure_schema(conn)
    await ensure_schema(conn)  # idempotent
    async with aws_client("secretsmanager", platform.settings) as sm:  # as the provisioner stores it
        await sm.create_secret(Name="hostplane/tenants/beta", SecretString=json.dumps({"FROM_SECRET": "yes"}))
    env_refs = {"alpha": f"file:{env_file}", "beta": "hostplane/tenants/beta"}
    ports = {}
    for tenant in TENANTS:
        ports[tenant] = await register_service(conn, tenant, env_refs[tenant], 256,
                                               ports=port_range(platform.settings))  # this platform's block
        first = await conn.fetchval("SELECT updated_at FROM runtime_services WHERE tenant_id = $1", tenant)
        # twice: no change, no restart, the same registered port
        assert await register_service(conn, tenant, env_refs[tenant], 256) == ports[tenant]
        assert await conn.fetchval("SELECT updated_at FROM runtime_services WHERE tenant_id = $1", tenant) == first
        store.publish_release(tenant, 1, SampleApp(version=1).zipapp())
        store.set_current(tenant, 1)
    agent = start_agent(home)
    try:
        await wait_for(lambda: all_serving(home, TENANTS, 1), 60, "both tenants serving release 1")
        before = state(home)["tenants"]
        assert {t: len(p) for t, p in reloaders_by_tenant(home).items()} == {"alpha": 1, "beta": 1}
        assert {t: before[t]["app_port"] for t in TENANTS} == ports, "served on the registered ports"
        assert ports["alpha"] != ports["beta"]
        assert before["alpha"]["memory_mb"] == 256
        sandboxed = sandbox.decide().sandboxed  # as HOSTPLANE_SANDBOX says: adoption works either way
        assert {before[t]["sandboxed"] for t in TENANTS} == {sandboxed}
        assert state(home)["agent"]["sandbox"]["mode"] == ("bwrap" if sandboxed else "off")
        assert "GREETING" in httpx.get(before["alpha"]["app_url"] + "/env").json()
        assert "FROM_SECRET" in httpx.get(before["beta"]["app_url"] + "/env").json()

        # the agent dies; its tenants keep serving, and a stray duplicate appears meanwhile
        load = Load(before["alpha"]["app_url"], clients=2, pause=0.01).start()
        agent.send_signal(signal.SIGKILL)
        agent.wait(5)
        stray_port, stray_health = free_ports(2)
        stray = subprocess.Popen(
            [sys.executable, "-m", "reloader", "--tenant", "alpha", "--artifacts", str(home / "artifacts"),
             "--port", str(stray_port), "--health-port", str(stray_health), "--events", "none",
             "--owner", f"agent:{home}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        await asyncio.sleep(1.0)
        agent = start_agent(home)
        await wait_for(lambda: stray.poll() is not None, 20, "the stray duplicate to be stopped")
        await asyncio.sleep(1.0)  # a few reconcile rounds
        await load.stop()
        after = state(home)["tenants"]
        assert {t: after[t]["pid"] for t in TENANTS} == {t: before[t]["pid"] for t in TENANTS}, "not re-adopted"
        assert {t: len(p) for t, p in reloaders_by_tenant(home).items()} == {"alpha": 1, "beta": 1}
        assert load.failures == [] and load.ok > 20

        # a reloader that dies is restarted on the same ports
        os.kill(after["alpha"]["pid"], signal.SIGKILL)
        await wait_for(lambda: state(home)["tenants"]["alpha"]["pid"] != after["alpha"]["pid"]
                       and all_serving(home, ["alpha"], 1), 30, "alpha restarted")
        restarted = state(home)["tenants"]["alpha"]
        assert restarted["app_port"] == after["alpha"]["app_port"] and restarted["restarts"] == 1

        # a new release reaches the tenant through its reloader; the reloader holds no AWS
        # credentials: it reports into its runtime folder and the agent publishes for it,
        # under the tenant's own runtime source
        store.publish_release("beta", 2, SampleApp(version=2).zipapp())
        store.set_current("beta", 2)
        await wait_for(lambda: all_serving(home, ["beta"], 2), 20, "beta on release 2")
        agent_log = home / "logs" / "agent-test.log"

        def published() -> list[dict]:
            return [e for e in map(json.loads, agent_log.read_text().splitlines()[-400:])
                    if e.get("event") == "runtime.report_published" and e.get("tenant_id") == "beta"]

        await wait_for(lambda: any(e["event_type"] == "ReleaseActivated" for e in published()), 10,
                       "the agent to publish beta's ReleaseActivated")
        assert {e["source"] for e in published()} == {"hostplane.runtime.beta"}
        assert "runtime.report_publish_failed" not in agent_log.read_text()
        assert '"event.published"' not in Path(after["beta"]["log"]).read_text(), "the reloader published itself"
        inner = agent_state.reloader_process(after["beta"]["pid"])
        environ = Path(f"/proc/{inner}/environ").read_bytes().split(b"\0")
        assert inner and not [v for v in environ if v.startswith((b"AWS_", b"HOSTPLANE_"))]

        # a deregistered tenant is drained, stopped and its local files removed
        beta_pid = after["beta"]["pid"]
        await deregister_service(conn, "beta")
        await wait_for(lambda: "beta" not in state(home)["tenants"] and not alive(beta_pid), 20, "beta removed")
        assert not (home / "runtime" / "beta").exists()

        # one agent per home
        second = start_agent(home)
        assert second.wait(10) != 0
    finally:
        agent.send_signal(signal.SIGTERM)
        code = agent.wait(30)
        await conn.execute("DELETE FROM runtime_services")
        await conn.close()
    assert code == 0
    assert reloaders_by_tenant(home) == {}, "SIGTERM must stop every reloader"
    assert state(home)["tenants"] == {}


async def test_a_taken_registered_port_is_reported_and_retried_never_replaced(platform, tmp_path):
    """Someone else listens on the tenant's registered port: the agent does not start it
    elsewhere (the edge points at that port); once the port is free it starts there."""
    import socket

    conn = await asyncpg.connect(platform.conn.control_dsn)
    squatter = None
    taken = free_port()
    store = ArtifactStore(tmp_path / "artifacts")
    store.publish_release("gamma", 1, SampleApp(version=1).zipapp())
    store.set_current("gamma", 1)
    agent = Agent(tmp_path / "home", platform.conn.control_dsn, tmp_path / "artifacts", interval=0.2, grace=2,
                  events="none")
    try:
        await ensure_schema(conn)
        assert await register_service(conn, "gamma", None, 128, ports=range(taken, taken + 1)) == taken
        squatter = socket.socket()  # someone else takes the port after the registration
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        await agent.reconcile()
        rec = agent.state.tenants["gamma"]
        assert (rec.pid, rec.app_state, rec.app_port) == (None, "port_taken", taken)
        squatter.close()
        await agent.reconcile()
        rec = agent.state.tenants["gamma"]
        assert rec.pid and rec.app_port == taken
    finally:
        if squatter is not None:
            squatter.close()
        await agent.remove("gamma")
        await conn.execute("DELETE FROM runtime_services WHERE tenant_id = 'gamma'")
        await conn.close()
        if agent.conn is not None:
            await agent.conn.close()
