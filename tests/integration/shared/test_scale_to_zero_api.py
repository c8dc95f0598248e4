"""Scale to zero through the whole platform (API, provisioner, registry, runtime agent,
edge, bus): a tenant created with `idle_after_s` sleeps once idle and `tenant show` says
so; a request at the edge wakes it and is served; an update to a sleeping tenant goes
live; a tenant created always-on keeps running."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest

from tests.support.platform_api import runtime_becomes, settled
from tests.support.spec_versions import tasks_spec

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240),
              pytest.mark.parametrize("running_platform", ["moto"], indirect=True)]
IDLE_S = 2


async def test_a_tenant_sleeps_when_idle_wakes_at_the_edge_and_takes_an_update(running_platform):
    settings = running_platform.settings
    token = json.loads((settings.home_dir / "credentials.json").read_text())["api_token"]
    name, steady = f"zz-{uuid.uuid4().hex[:8]}", f"on-{uuid.uuid4().hex[:8]}"
    api = httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.api_port}", timeout=10,
                            headers={"Authorization": f"Bearer {token}"})
    edge = httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.edge_port}", timeout=30,
                             headers={"Host": f"{name}.localhost"})
    async with api, edge:
        try:
            for tenant, idle in ((name, IDLE_S), (steady, 0)):
                created = await api.post("/v1/tenants", json={"name": tenant, "app": tasks_spec(1),
                                                              "idle_after_s": idle})
                assert created.status_code == 202, created.text
            assert (await settled(api, name, 1))["state"] == "ready"
            assert (await settled(api, steady, 1))["state"] == "ready"
            assert (await edge.post("/api/task", json={"title": "before sleeping"})).status_code == 201

            asleep = await runtime_becomes(api, name, "asleep")
            assert (asleep["state"], asleep["version"], asleep["idle_after_s"]) == ("ready", 1, IDLE_S)
            agent = json.loads((settings.home_dir / "runtime" / "agent.json").read_text())["tenants"]
            assert agent[name]["pid"] is None and agent[name]["runtime"] == "asleep"

            t0 = time.monotonic()
            rows = await edge.get("/api/task")  # held at the edge while the tenant wakes, then served
            assert rows.status_code == 200, rows.text
            assert [r["title"] for r in rows.json()["items"]] == ["before sleeping"], "its database outlived its sleep"
            assert time.monotonic() - t0 < 20
            await runtime_becomes(api, name, "running")

            await runtime_becomes(api, name, "asleep")
            updated = await api.put(f"/v1/tenants/{name}/app", json={"app": tasks_spec(2)})
            assert updated.status_code == 202, updated.text
            after = await settled(api, name, 2)
            assert (after["state"], after["version"]) == ("ready", 2), "a deploy to a sleeping tenant goes live"
            assert (await edge.post("/api/task", json={"title": "v2", "notes": "n"})).status_code == 201
            # asleep again, now with releases that served before: waking still says "running"
            await runtime_becomes(api, name, "asleep")
            assert (await edge.get("/api/task")).status_code == 200
            await runtime_becomes(api, name, "running")

            on = (await api.get(f"/v1/tenants/{steady}")).json()
            assert (on["runtime"], on["idle_after_s"]) == ("running", 0), "always-on never sleeps"
            events = (await api.get(f"/v1/tenants/{name}/events")).json()["events"]
            kinds = [e["event_type"] for e in events]
            assert "RuntimeSlept" in kinds and "RuntimeWoke" in kinds, kinds
        finally:
            for tenant in (name, steady):
                await api.delete(f"/v1/tenants/{tenant}")
