"""The agent's bounded fan-out (agent.gather_bounded): starts and health probes each round
run concurrently, never more than their limit at once, and every one of them runs."""

from __future__ import annotations

import asyncio

from hostplane.local.agent.agent import PROBE_CONCURRENCY, gather_bounded


async def test_every_one_runs_and_never_more_than_the_limit_at_once():
    running, most, done = 0, 0, []

    async def job(i: int) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01)
        running -= 1
        done.append(i)

    await gather_bounded(PROBE_CONCURRENCY, (job(i) for i in range(25)))
    assert sorted(done) == list(range(25))
    assert most == PROBE_CONCURRENCY


async def test_the_health_round_reads_each_reloaders_answer_and_a_bad_one_is_unreachable():
    """refresh_health over reloader.probe: a real /runtime/healthz server answers; answers of
    the wrong shape, type or size, JSON nested past the parser's recursion limit, a server that
    closes at once and a closed port all read as unreachable, and none stops the round nor
    lands in the state (a reloader runs as its tenant: its answer is data)."""
    from types import SimpleNamespace

    from core.ports import free_port
    from hostplane.local.agent.agent import Agent
    from hostplane.local.agent.sleep import IdleClock
    from hostplane.local.agent.state import AgentState, RunningTenant
    from reloader.health import serve_health

    good = await serve_health("127.0.0.1", 0, lambda: {"status": "ok", "runtime": {"requests_served": 7},
                                                       "app": {"healthy": True, "state": "serving", "live_version": 3}})
    shaped = await serve_health("127.0.0.1", 0, lambda: {"status": "ok", "app": ["not", "an", "object"]})
    bloated = await serve_health("127.0.0.1", 0, lambda: {"status": "ok", "app": {"healthy": True, "state": "x" * 500_000}})
    typed = await serve_health("127.0.0.1", 0, lambda: {"status": "ok", "app": {"healthy": True, "live_version": "3"}})

    async def deep(reader, writer):  # nested past the JSON parser's recursion limit, within the size cap
        await reader.readuntil(b"\r\n\r\n")
        body = b"[" * 200_000
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body) + body)
        await writer.drain()
        writer.close()

    async def hang_up(reader, writer):
        writer.close()

    rude = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    nested = await asyncio.start_server(deep, "127.0.0.1", 0)
    ports = {"good": good, "shaped": shaped, "rude": rude, "bloated": bloated, "typed": typed, "nested": nested}
    tenants = {name: RunningTenant(tenant_id=name, app_port=1, pid=100, host="127.0.0.1",
                                   health_port=server.sockets[0].getsockname()[1], app_state="starting")
               for name, server in ports.items()}
    tenants["gone"] = RunningTenant(tenant_id="gone", app_port=1, pid=101, host="127.0.0.1", health_port=free_port())
    try:
        await Agent.refresh_health(SimpleNamespace(state=AgentState(tenants=tenants), probed_at={}, idle=IdleClock(),
                                                   failure_told=set()))
    finally:
        for server in ports.values():
            server.close()
    assert (tenants["good"].healthy, tenants["good"].app_state, tenants["good"].live_version,
            tenants["good"].requests_served) == (True, "serving", 3, 7)
    for name in ("shaped", "rude", "gone", "bloated", "typed", "nested"):
        assert (tenants[name].healthy, tenants[name].app_state, tenants[name].live_version) == \
            (False, "unreachable", None), name


async def test_a_settled_runtime_is_asked_every_few_seconds_and_one_starting_or_near_its_sleep_every_round():
    from types import SimpleNamespace

    from hostplane.local.agent.agent import SETTLED_PROBE_S, Agent, probe_due
    from hostplane.local.agent.sleep import IdleClock
    from hostplane.local.agent.state import AgentState, RunningTenant
    from reloader.health import serve_health

    def tenant(**kw) -> RunningTenant:
        return RunningTenant(tenant_id="t", app_port=1, health_port=1, pid=100,
                             **({"healthy": True, "app_state": "serving"} | kw))

    settled = tenant(idle_after_s=900)
    assert probe_due(settled, None, 0.0, 100.0), "never answered: asked"
    assert not probe_due(settled, 99.0, 10.0, 100.0), "answered a second ago, serving, far from its sleep"
    assert probe_due(settled, 100.0 - SETTLED_PROBE_S, 10.0, 100.0), "answered SETTLED_PROBE_S ago"
    assert probe_due(settled, 99.0, 900 - SETTLED_PROBE_S, 100.0), "its sleep is decided on a fresh count"
    assert not probe_due(tenant(idle_after_s=0), 99.0, 10_000.0, 100.0), "never sleeps: no hurry"
    for state in ({"app_state": "starting"}, {"app_state": "unreachable", "healthy": False},
                  {"app_state": "serving", "healthy": False}, {"app_state": "restarting"}):
        assert probe_due(tenant(idle_after_s=900, **state), 99.9, 0.0, 100.0), state

    answers = []
    server = await serve_health("127.0.0.1", 0, lambda: answers.append(1) or {
        "status": "ok", "runtime": {"requests_served": len(answers)}, "app": {"healthy": True, "state": "serving"}})
    rec = RunningTenant(tenant_id="t", app_port=1, pid=100, host="127.0.0.1", idle_after_s=900,
                        health_port=server.sockets[0].getsockname()[1])
    agent = SimpleNamespace(state=AgentState(tenants={"t": rec}), probed_at={}, idle=IdleClock(), failure_told={"t"})
    try:
        for _ in range(3):
            await Agent.refresh_health(agent)
        assert len(answers) == 1 and rec.requests_served == 1 and rec.app_state == "serving"
        assert agent.failure_told == set(), "serving again: a next failure is told again"
        agent.probed_at.pop("t")  # what a pointer move (Agent.poke) does
        await Agent.refresh_health(agent)
        assert len(answers) == 2 and rec.requests_served == 2, "asked again after a deploy"
    finally:
        server.close()
