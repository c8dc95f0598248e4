"""Push activation at the runtime agent: the migrator's pointer notice becomes SIGUSR1 to that
tenant's reloader (inside its sandbox), and only once its health port has answered."""

from __future__ import annotations

import signal

import pytest

from hostplane.local.agent import agent as agent_module
from hostplane.local.agent.agent import Agent
from hostplane.local.agent.state import RunningTenant
from reloader.sandbox import Decision


@pytest.fixture
def agent(tmp_path, monkeypatch):
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(agent_module.agent_state, "reloader_process", lambda pid: pid + 3)  # inside the sandbox
    monkeypatch.setattr(agent_module.os, "kill", lambda pid, sig: sent.append((pid, sig)))
    a = Agent(tmp_path / "home", "postgresql://unused", tmp_path / "artifacts",
              isolation=Decision("off", sandboxed=False))
    a.sent = sent  # type: ignore[attr-defined]
    return a


def test_a_notice_pokes_that_tenants_reloader_only(agent):
    agent.state.tenants["acme"] = RunningTenant("acme", 10001, 10002, pid=500, app_state="running")
    agent.state.tenants["other"] = RunningTenant("other", 10003, 10004, pid=600, app_state="running")
    agent.poke(None, 1, "hostplane_pointer", "acme")
    assert agent.sent == [(503, signal.SIGUSR1)]


@pytest.mark.parametrize("state", ["starting", "unreachable", "restarting", "port_taken"])
def test_a_reloader_not_yet_answering_is_left_to_its_poll(agent, state):
    agent.state.tenants["acme"] = RunningTenant("acme", 10001, 10002, pid=500, app_state=state)
    agent.poke(None, 1, "hostplane_pointer", "acme")
    agent.poke(None, 1, "hostplane_pointer", "unknown")
    assert agent.sent == []


def test_a_reloader_gone_meanwhile_is_no_error(agent, monkeypatch):
    def gone(pid, sig):
        raise ProcessLookupError(pid)

    monkeypatch.setattr(agent_module.os, "kill", gone)
    agent.state.tenants["acme"] = RunningTenant("acme", 10001, 10002, pid=500, app_state="no_release")
    agent.poke(None, 1, "hostplane_pointer", "acme")


async def test_a_removed_tenant_leaves_nothing_a_new_one_of_its_name_would_inherit(agent):
    """Deleted, then created again: its first failure is told again, with no crash streak,
    restart delay or probe time carried over."""
    agent.leave_running = True  # nothing on disk to clean in this test
    agent.state.tenants["acme"] = RunningTenant("acme", 10001, 10002, pid=None, app_state="restarting")
    agent.failing("acme", "crash_loop", "its runtime died 3 times in a row")
    agent.streak["acme"], agent.not_before["acme"], agent.probed_at["acme"] = 3, 1e12, 1.0
    await agent.remove("acme")
    assert "acme" not in agent.failure_told | agent.streak.keys() | agent.not_before.keys() | agent.probed_at.keys()
    agent.failing("acme", "environment", "secret hostplane/tenants/acme: ResourceNotFoundException")
    from contracts.registry import parse_envelope

    told = [parse_envelope(f) for f in agent.state.facts]
    assert [(e.event_type, e.data.reason) for e in told] == [("RuntimeFailed", "crash_loop"),
                                                           ("RuntimeFailed", "environment")]
