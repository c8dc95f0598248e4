"""Scale to zero, the agent's side of it (mixed into agent.Agent; its sockets and idle
clock: agent.sleep).

Each round, a running tenant whose runtime served no request for its idle period (its
own `idle_after_s`, else the platform's `scale_to_zero_after`; 0 never) is stopped like
any runtime, whatever it left in its cgroups is killed, and its socket is watched. The
first connection to arrive wakes it at once (not at the next round). A pointer move to a
sleeping tenant wakes it too: a release counts as live only once it proved itself (its
health check and smoke request), so a deploy or rollback must not wait for a visitor to
find out it fails. The sleep and wake facts (RuntimeSlept, RuntimeWoke) are queued in
the agent's state file and published by the round until they are out.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time

import structlog

from contracts.registry import parse_envelope
from contracts.events_v1 import RuntimeFailed, RuntimeSlept, RuntimeWoke
from hostplane.local.agent.state import RunningTenant
from reloader.reporting import envelope
from services.resources.registry import DesiredService

log = structlog.get_logger("runtime-agent")
# What the agent itself writes in `app_state` before a runtime's health port first answers.
NOT_ANSWERED = ("starting", "unreachable", "restarting", "port_taken")


class Sleeping:
    """The scale-to-zero half of agent.Agent (uses its state, listeners, idle clock, start)."""


    def idle_after(self, service: DesiredService) -> int:
        """Seconds without a request before the tenant sleeps: its own choice, else the platform's; 0 never."""
        return self.default_idle_s if service.idle_after_s is None else service.idle_after_s

    async def sleep_idle(self) -> None:
        """Stop every runtime that served no request for its idle period; keep its socket, watch it."""
        due = []
        for tenant, rec in self.state.tenants.items():
            if rec.asleep or not rec.pid or tenant in self.starting or not rec.idle_after_s:
                continue
            if rec.app_state in NOT_ANSWERED:
                self.idle.active(tenant)  # a start or swap in progress is not idleness
                continue
            idle = self.idle.observe(tenant, rec.requests_served)
            if idle >= rec.idle_after_s:
                due.append((rec, idle))
        await asyncio.gather(*(self.put_to_sleep(rec, idle) for rec, idle in due))
        if due:  # once for them all: at 1,000 tenants a save is ≈ 9 ms, 900 falling asleep together 8 s
            self.save()

    async def put_to_sleep(self, rec: RunningTenant, idle: float) -> None:
        tenant = rec.tenant_id
        loop = asyncio.get_running_loop()
        self.stopping_to_sleep.add(tenant)
        try:
            await loop.run_in_executor(self.sleep_stops, self.stop_runtime, rec)
        finally:
            self.stopping_to_sleep.discard(tenant)
        with contextlib.suppress(ChildProcessError, TypeError):
            os.waitpid(rec.pid, os.WNOHANG)
        await loop.run_in_executor(self.sleep_stops, self.kill_leftovers, tenant)  # asleep: no process at all
        rec.pid, rec.create_time, rec.healthy, rec.app_state = None, None, False, "asleep"
        rec.asleep, rec.slept_at, rec.requests_served = True, time.time(), None
        self.idle.forget(tenant)
        self.hold(rec)
        log.info("runtime.slept", tenant_id=tenant, idle_s=round(idle, 1), version=rec.live_version)
        self.fact(tenant, RuntimeSlept(idle_s=int(idle), version=rec.live_version))
        if tenant in self.poked_while_stopping:  # a release arrived while it stopped
            self.poked_while_stopping.discard(tenant)
            self.wake(tenant, "deploy")

    def keep_asleep(self, rec: RunningTenant, service: DesiredService) -> None:
        """A sleeping tenant's round: its socket held and watched (after an agent restart, bound
        again), its new settings noted for its wake; a tenant that must no longer sleep wakes."""
        tenant = rec.tenant_id
        if not rec.idle_after_s:
            self.wake(tenant, "settings")  # became --always-on
            return
        self.hold(rec, service.app_port)

    def hold(self, rec: RunningTenant, port: int | None = None) -> None:
        """Hold and watch a sleeping tenant's socket. Usually the agent has held it all along;
        a runtime it adopted (started by an agent before a restart) had the only copy, so
        the port is bound again once that runtime stopped (what arrives in between is
        refused; the next round retries a port someone else took meanwhile)."""
        tenant = rec.tenant_id
        try:
            self.listeners.ensure(tenant, port or rec.app_port)
        except OSError:
            if rec.app_state != "port_taken":
                log.error("runtime.port_taken", tenant_id=tenant, app_port=rec.app_port,
                          error="another program listens on the sleeping tenant's port; retrying")
                self.failing(tenant, "port_taken", f"another program listens on its port {rec.app_port}")
            rec.app_state = "port_taken"
            return
        rec.app_state = "asleep"
        self.listeners.watch(tenant, lambda t: self.wake(t, "request"))

    def wake(self, tenant: str, trigger: str) -> None:
        """Start a sleeping tenant's runtime now, on the socket its waiting request sits on."""
        rec, service = self.state.tenants.get(tenant), self.desired.get(tenant)
        if rec is None or not rec.asleep or service is None:
            return
        self.listeners.unwatch(tenant)
        asleep_s = int(time.time() - (rec.slept_at or time.time()))
        rec.asleep, rec.app_state, rec.wakes = False, "starting", rec.wakes + 1
        log.info("runtime.waking", tenant_id=tenant, trigger=trigger, asleep_s=asleep_s)
        self.fact(tenant, RuntimeWoke(trigger=trigger, asleep_s=asleep_s))
        task = asyncio.create_task(self.start(service, rec))
        self.wakes_in_flight.add(task)
        task.add_done_callback(self.wakes_in_flight.discard)

    def fact(self, tenant: str, event) -> None:
        """Queue a sleep/wake fact for the bus, published by the round (kept until it goes out)."""
        self.state.facts.append(envelope(tenant, event, None).to_detail())

    def failing(self, tenant: str, reason: str, detail: str) -> None:
        """RuntimeFailed, once until the runtime is next seen serving (`tenant show` says
        `failed` rather than the `running` of its last release)."""
        if tenant in self.failure_told:
            return
        self.failure_told.add(tenant)
        self.fact(tenant, RuntimeFailed(reason=reason, detail=detail[:200]))

    async def flush_facts(self) -> None:
        """Publish the queued facts, ten at a time (one PutEvents); what fails goes next round."""
        if self.events != "agent":
            self.state.facts.clear()  # no bus to tell (a debugging mode)
        while self.state.facts:
            batch = self.state.facts[:10]
            try:
                await self.publish([parse_envelope(d) for d in batch])
            except Exception as exc:  # the bus is down: they go with the next round
                log.warning("runtime.fact_publish_failed", error=type(exc).__name__, pending=len(self.state.facts))
                return
            del self.state.facts[:len(batch)]
