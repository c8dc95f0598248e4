"""Changing a tenant's idle period after its creation, through the whole platform (CLI, API,
outbox, bus, provisioner, runtime registry, runtime agent): a sleeping tenant switched to
always-on wakes and stays running; switched back to a number, it sleeps again; the same
value again changes nothing; a bad one is refused and changes nothing."""

from __future__ import annotations

import asyncio
import json
import uuid

import asyncpg
import httpx
import pytest

from tests.support.cli import hostplane, ok
from tests.support.platform_api import runtime_becomes, settled
from tests.support.spec_versions import tasks_spec

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240),
              pytest.mark.parametrize("running_platform", ["moto"], indirect=True)]
IDLE_S = 2


async def registered_idle(dsn: str, name: str) -> int | None:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval("SELECT idle_after_s FROM runtime_services WHERE tenant_id = $1", name)
    finally:
        await conn.close()


async def test_a_sleeping_tenant_made_always_on_wakes_stays_up_and_sleeps_again_once_given_a_period(running_platform):
    settings, dsn = running_platform.settings, running_platform.conn.control_dsn
    token = json.loads((settings.home_dir / "credentials.json").read_text())["api_token"]
    name = f"ia-{uuid.uuid4().hex[:8]}"
    api = httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.api_port}", timeout=10,
                            headers={"Authorization": f"Bearer {token}"})
    async with api:
        try:
            created = await api.post("/v1/tenants", json={"name": name, "app": tasks_spec(1), "idle_after_s": IDLE_S})
            assert created.status_code == 202, created.text
            assert (await settled(api, name, 1))["state"] == "ready"
            await runtime_becomes(api, name, "asleep")

            # always-on, from the CLI as a user would: it waits for the change to settle
            shown = json.loads(ok(await asyncio.to_thread(
                hostplane, running_platform.env(), "tenant", "update", name, "--always-on", "--wait", "--timeout",
                "60", "--json", timeout=90)))
            assert (shown["state"], shown["request"]["kind"], shown["idle_after_s"]) == ("ready", "idle", 0)
            assert await registered_idle(dsn, name) == 0
            await runtime_becomes(api, name, "running")  # woken by the settings, no request needed
            await asyncio.sleep(3 * IDLE_S)  # well past its old period: it stays up
            assert (await api.get(f"/v1/tenants/{name}")).json()["runtime"] == "running"
            agent = json.loads((settings.home_dir / "runtime" / "agent.json").read_text())["tenants"]
            assert agent[name]["pid"] is not None and agent[name]["runtime"] != "asleep"

            same = await api.put(f"/v1/tenants/{name}/idle-after", json={"idle_after_s": 0})
            assert same.status_code == 200 and same.json()["changed"] is False, same.text
            bad = await api.put(f"/v1/tenants/{name}/idle-after", json={"idle_after_s": "5"})
            assert bad.status_code == 422 and bad.json()["detail"].startswith("idle_after_s: "), bad.text
            assert (await api.get(f"/v1/tenants/{name}")).json()["idle_after_s"] == 0

            back = await api.put(f"/v1/tenants/{name}/idle-after", json={"idle_after_s": IDLE_S})
            assert back.status_code == 202 and back.json()["request"]["kind"] == "idle", back.text
            after = await settled(api, name)
            assert (after["state"], after["request"]["generation"], after["idle_after_s"]) == (
                "ready", back.json()["request"]["generation"], IDLE_S)
            assert await registered_idle(dsn, name) == IDLE_S
            await runtime_becomes(api, name, "asleep")

            kinds = [e["event_type"] for e in (await api.get(f"/v1/tenants/{name}/events")).json()["events"]]
            assert kinds.count("IdleAfterChangeRequested") == 2 and kinds.count("IdleAfterChanged") == 2, kinds
        finally:
            await api.delete(f"/v1/tenants/{name}")
