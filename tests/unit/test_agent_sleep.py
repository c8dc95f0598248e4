"""Scale to zero, the agent's parts on their own: the sockets it holds and watches
(agent.sleep.Listeners, on real loopback sockets), the idle clock, the runtime a record
shows, and the sleep/wake facts a tenant may not forge (agent.reports)."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest

from contracts.envelope import Envelope
from contracts.events_v1 import RuntimeSlept, RuntimeWoke
from core.ports import free_port
from hostplane.local.agent import reports
from hostplane.local.agent.sleep import IdleClock, Listeners, PortTaken
from hostplane.local.agent.sleeping import Sleeping
from hostplane.local.agent.state import AgentState, RunningTenant


async def test_a_connection_to_a_sleeping_tenant_waits_in_the_backlog_and_wakes_it_once():
    listeners, port = Listeners("127.0.0.1"), free_port()
    sock = listeners.ensure("acme", port)
    assert listeners.ensure("acme", port) is sock, "bound once, kept"
    woken: list[str] = []
    listeners.watch("acme", woken.append)
    listeners.watch("acme", woken.append)  # watching twice is watching once
    client = socket.create_connection(("127.0.0.1", port), timeout=2)  # accepted by the kernel, nobody runs
    try:
        for _ in range(50):
            await asyncio.sleep(0.02)
            if woken:
                break
        await asyncio.sleep(0.1)
        assert woken == ["acme"], "one wake per sleep, however many connections wait"
        assert "acme" not in listeners.watched
        conn, _ = sock.accept()  # the runtime's first accept gets the connection that waited
        client.sendall(b"ping")
        assert conn.recv(4) == b"ping"
        conn.close()
    finally:
        client.close()
        listeners.close_all()
    assert listeners.sockets == {}


async def test_someone_else_on_the_port_is_port_taken_and_a_changed_port_is_bound_anew():
    listeners, port, other = Listeners("127.0.0.1"), free_port(), free_port()
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", port))
    squatter.listen()
    try:
        with pytest.raises(PortTaken):
            listeners.ensure("acme", port)
        assert listeners.held("acme") is None
    finally:
        squatter.close()
    first = listeners.ensure("acme", port)
    moved = listeners.ensure("acme", other)
    assert moved is not first and moved.getsockname()[1] == other and first.fileno() == -1
    listeners.close_all()


def test_the_idle_clock_counts_from_the_last_change_of_the_running_total():
    now = [100.0]
    clock = IdleClock(lambda: now[0])
    assert clock.observe("acme", 0) == 0
    now[0] = 105
    assert clock.observe("acme", 0) == 5
    assert clock.observe("acme", 3) == 0, "requests served: active"
    now[0] = 110
    assert clock.observe("acme", 3) == 5
    assert clock.observe("acme", 0) == 0, "a new runtime counts from zero: a change, not idleness"
    now[0] = 112
    assert clock.observe("acme", None) == 2, "no figure (health unreadable) is not activity"
    clock.active("acme")  # a deploy
    assert clock.observe("acme", 0) == 0
    clock.forget("acme")
    assert "acme" not in clock.seen


@pytest.mark.parametrize(("fields", "runtime"), [
    ({"asleep": True}, "asleep"),
    ({"pid": 10, "healthy": True, "app_state": "serving"}, "running"),
    ({"pid": 10, "app_state": "starting"}, "starting"),
    ({"pid": None, "app_state": "starting"}, "starting"),
    ({"pid": 10, "app_state": "failed"}, "failed"),
    ({"pid": None, "restarts": 2, "app_state": "restarting"}, "failed"),
    ({"pid": None, "app_state": "port_taken"}, "failed"),
    ({"asleep": True, "app_state": "port_taken"}, "failed"),  # a request cannot wake it
])
def test_the_runtime_a_record_shows(fields, runtime):
    rec = RunningTenant(tenant_id="acme", app_port=1, health_port=2, **fields)
    assert rec.runtime == runtime
    assert rec.to_json()["runtime"] == runtime
    assert RunningTenant.from_json(rec.to_json()) == rec, "the derived field is not read back"


def test_queued_facts_survive_a_restart_of_the_agent(tmp_path):
    from hostplane.local.agent import state as agent_state
    from reloader.reporting import envelope

    state = AgentState()
    state.facts.append(envelope("acme", RuntimeSlept(idle_s=900, version=2), None).to_detail())
    agent_state.save(tmp_path, state)
    assert agent_state.load(tmp_path).facts == state.facts


@pytest.mark.parametrize("fact", [RuntimeSlept(idle_s=1), RuntimeWoke(trigger="request", asleep_s=1)])
def test_a_tenant_cannot_report_its_own_sleep_or_wake(fact):
    line = Envelope.new(fact, tenant_id="acme", producer="reloader").to_detail().encode()
    assert reports.check(line, "acme") == ("agent_only", fact.event_type)
    assert json.loads(line)["event_type"] in reports.AGENT_ONLY


class Adopter(Sleeping):
    """Sleeping's parts, around a runtime an earlier agent started: the socket was only ever
    the runtime's, this agent holds none."""

    def __init__(self, rec: RunningTenant) -> None:
        self.state, self.listeners, self.idle = AgentState(tenants={rec.tenant_id: rec}), Listeners("127.0.0.1"), \
            IdleClock()
        self.stopping_to_sleep, self.poked_while_stopping, self.starting = set(), set(), set()
        self.default_idle_s, self.stopped, self.woken, self.saves = 900, [], [], 0
        self.sleep_stops = None  # the loop's default executor
        self.failure_told: set[str] = set()

    def stop_runtime(self, rec: RunningTenant) -> None:
        self.stopped.append(rec.tenant_id)

    def kill_leftovers(self, tenant: str) -> None:
        pass

    def save(self) -> None:
        self.saves += 1

    def wake(self, tenant: str, trigger: str) -> None:
        self.woken.append((tenant, trigger))


async def test_a_runtime_adopted_after_an_agent_restart_sleeps_and_its_port_is_then_held():
    port = free_port()
    rec = RunningTenant(tenant_id="acme", app_port=port, health_port=1, pid=None, app_state="serving",
                        healthy=True, idle_after_s=1, requests_served=4)
    rec.pid = 2 ** 22 + 1  # no such process: waitpid fails quietly
    agent = Adopter(rec)
    clock = [0.0]
    agent.idle = IdleClock(lambda: clock[0])
    try:
        await agent.sleep_idle()
        assert agent.saves == 0, "a round that puts nobody to sleep writes nothing"
        clock[0] = 1.5
        await agent.sleep_idle()
        assert agent.stopped == ["acme"], "not kept awake for want of a socket"
        assert agent.saves == 1, "the state is saved once the round's sleepers are stopped"
        assert rec.runtime == "asleep" and agent.listeners.held("acme").getsockname()[1] == port
        client = socket.create_connection(("127.0.0.1", port), timeout=2)
        for _ in range(50):
            await asyncio.sleep(0.02)
            if agent.woken:
                break
        client.close()
        assert agent.woken == [("acme", "request")]
    finally:
        agent.listeners.close_all()


def test_only_so_many_runtimes_boot_at_once_and_a_stuck_one_frees_its_place():
    """A thousand registered at once must not all boot together (agent.MAX_WARMING)."""
    from datetime import UTC, datetime, timedelta
    from types import SimpleNamespace

    from hostplane.local.agent.agent import MAX_WARMING, WARMING_FOR_S, Agent

    now = datetime.now(UTC)
    recs = {f"t{i}": RunningTenant(tenant_id=f"t{i}", app_port=i, health_port=i, pid=100 + i, app_state=state,
                                   started_at=(now - timedelta(seconds=age)).isoformat())
            for i, (state, age) in enumerate([("starting", 1), ("unreachable", 2), ("serving", 1), ("no_release", 1),
                                               ("starting", WARMING_FOR_S + 5)])}
    recs["asleep"] = RunningTenant(tenant_id="asleep", app_port=9, health_port=9, asleep=True, app_state="asleep")
    agent = SimpleNamespace(state=AgentState(tenants=recs), starting={"t9"})
    assert Agent.warming(agent) == 3, "booting: t0, t1 and the start in flight; not the stuck t4"
    assert MAX_WARMING >= 8


async def test_the_report_watch_reads_a_flooding_tenants_file_at_most_once_a_second(tmp_path):
    from types import SimpleNamespace

    from hostplane.local.agent.agent import REPORT_WATCH_EVERY_S, Agent

    for name in ("flood", "asleep"):
        (tmp_path / "runtime" / name).mkdir(parents=True)
    events = tmp_path / "runtime" / "flood" / reports.EVENTS_FILE
    (tmp_path / "runtime" / "asleep" / reports.EVENTS_FILE).write_text("last words\n")
    relayed: list[list[str]] = []

    async def relay_reports(tenants):
        relayed.append(tenants)

    tenants = {"flood": RunningTenant(tenant_id="flood", app_port=1, health_port=2, pid=1234),
               "asleep": RunningTenant(tenant_id="asleep", app_port=3, health_port=4, asleep=True)}
    agent = SimpleNamespace(home=tmp_path, stop_requested=asyncio.Event(), watch_relayed={}, relay_reports=relay_reports,
                            state=AgentState(tenants=tenants))
    watch = asyncio.create_task(Agent.watch_reports(agent))
    for i in range(15):  # a new line every 0.1 s for 1.5 s: the file always grew since the cursor
        events.write_text("junk\n" * (i + 1))
        await asyncio.sleep(0.1)
    agent.stop_requested.set()
    await watch
    assert 1 <= len(relayed) <= 1.5 / REPORT_WATCH_EVERY_S + 1, relayed
    assert all(batch == ["flood"] for batch in relayed), "a sleeper's file is the round's to read, not the watch's"


def test_a_runtime_the_host_cannot_run_is_said_failed_once_per_episode():
    """RuntimeFailed goes out once, not every round the agent retries; a port taken while the
    tenant sleeps says it too. The round's probe clears it once the runtime serves (agent.py)."""
    from contracts.registry import parse_envelope

    rec = RunningTenant(tenant_id="acme", app_port=free_port(), health_port=1, pid=None, app_state="asleep")
    agent = Adopter(rec)
    for _ in range(3):
        agent.failing("acme", "environment", "secret hostplane/tenants/acme: ResourceNotFoundException")
    [told] = [parse_envelope(f) for f in agent.state.facts]
    assert (told.event_type, told.tenant_id, told.data.reason) == ("RuntimeFailed", "acme", "environment")
    agent.failure_told.clear()  # what a probe that finds it serving does
    squatter = socket.create_server(("127.0.0.1", rec.app_port))
    try:
        agent.hold(rec)
        agent.hold(rec)
    finally:
        squatter.close()
    assert rec.app_state == "port_taken"
    assert [parse_envelope(f).data.reason for f in agent.state.facts] == ["environment", "port_taken"]
