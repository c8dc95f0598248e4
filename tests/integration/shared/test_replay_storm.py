"""Replay storm through a real platform (API, provisioner, builder, migrator, router-config,
reloader, edge; moto): a tenant with an update and a rollback in its history has it
replayed three times through the API: its version, releases and rows stay as they were,
the event log grows only by re-publications of its originals and their marked output (no
replay of a replay), and another tenant's create meanwhile completes within a generous
bound (the figure is printed; docs/replay.md)."""

from __future__ import annotations

import asyncio
import copy
import json
import time
import uuid

import httpx
import pytest
import yaml

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300),
              pytest.mark.parametrize("running_platform", ["moto"], indirect=True)]

V1 = yaml.safe_load(open("examples/tasks.yaml"))
REPLAYS = 3
BYSTANDER_BOUND_S = 30.0


def spec(n: int) -> dict:
    out = copy.deepcopy(V1)
    if n >= 2:
        out["entities"]["task"]["fields"]["notes"] = {"type": "text"}
    return out


async def settled(http: httpx.AsyncClient, name: str, version: int | None = None, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tenant = (await http.get(f"/v1/tenants/{name}")).json()
        assert tenant["state"] != "failed", tenant
        if tenant["state"] == "ready" and (version is None or tenant["version"] == version):
            return tenant
        await asyncio.sleep(0.1)
    raise AssertionError(f"{name} did not settle: {tenant}")


async def events(api: httpx.AsyncClient, name: str) -> list[dict]:
    answer = await api.get(f"/v1/tenants/{name}/events", params={"limit": 1000})
    assert answer.status_code == 200, answer.text
    return answer.json()["events"]


async def quiet(api: httpx.AsyncClient, name: str, still_s: float = 4.0, timeout: float = 90) -> list[dict]:
    """The tenant's event log once it has stopped growing for `still_s`."""
    deadline, last, since = time.monotonic() + timeout, -1, time.monotonic()
    while time.monotonic() < deadline:
        log = await events(api, name)
        if len(log) != last:
            last, since = len(log), time.monotonic()
        elif time.monotonic() - since >= still_s:
            return log
        await asyncio.sleep(0.5)
    raise AssertionError(f"{name}'s event log kept growing: {last} events")


async def create_and_time(api: httpx.AsyncClient, name: str) -> float:
    started = time.monotonic()
    assert (await api.post("/v1/tenants", json={"name": name, "app": spec(1)})).status_code == 202
    await settled(api, name, 1, timeout=120)
    return time.monotonic() - started


async def test_replayed_history_changes_nothing_and_does_not_stall_others(running_platform):
    settings = running_platform.settings
    token = json.loads((settings.home_dir / "credentials.json").read_text())["api_token"]
    name, other, baseline = (f"{p}-{uuid.uuid4().hex[:8]}" for p in ("rs", "by", "bl"))
    api = httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.api_port}", timeout=15,
                            headers={"Authorization": f"Bearer {token}"})
    app = httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.edge_port}", timeout=10,
                            headers={"Host": f"{name}.localhost"})
    async with api, app:
        try:
            assert (await api.post("/v1/tenants", json={"name": name, "app": spec(1)})).status_code == 202
            await settled(api, name, 1)
            for i in range(3):
                assert (await app.post("/api/task", json={"title": f"row {i}"})).status_code == 201
            assert (await api.put(f"/v1/tenants/{name}/app", json={"app": spec(2)})).status_code == 202
            await settled(api, name, 2)
            assert (await app.post("/api/task", json={"title": "with notes", "notes": "n"})).status_code == 201
            assert (await api.post(f"/v1/tenants/{name}/rollback", json={"to": 1})).status_code == 202
            await settled(api, name, 3)
            history = await quiet(api, name)
            originals = [e for e in history if e["replay_id"] is None]
            assert len(originals) == len(history), "no replay yet"
            releases = (await api.get(f"/v1/tenants/{name}/releases")).json()
            rows = sorted(r["title"] for r in (await app.get("/api/task?limit=50")).json()["items"])
            base_s = await create_and_time(api, baseline)

            queued = []
            for _ in range(REPLAYS):
                answer = await api.post(f"/v1/tenants/{name}/replay", json={})
                assert answer.status_code == 202, answer.text
                queued.append(answer.json()["queued"])
            bystander_s = await create_and_time(api, other)
            print(f"\nbystander create: {bystander_s:.2f} s during a replay storm of {REPLAYS} x "
                  f"{len(originals)} events (baseline {base_s:.2f} s)")
            assert bystander_s < BYSTANDER_BOUND_S

            after = await quiet(api, name)
            # each replay re-published exactly the originals: never a replay, never replay output
            assert queued == [len(originals)] * REPLAYS
            original_ids = {e["event_id"] for e in originals}
            republished = [e for e in after if e["event_id"] in original_ids and e["replay_id"]]
            assert len(republished) == REPLAYS * len(originals)
            assert [e for e in after if e["replay_id"] is None] == originals, "replays made no new history"
            caused = [e for e in after if e["event_id"] not in original_ids]
            assert all(e["replay_id"] for e in caused), "what a replay causes is marked"
            types = sorted({e["event_type"] for e in caused})
            print(f"replay output: {len(caused)} events of {types}")
            assert not {"BuildFailed", "MigrationFailed", "ProvisioningFailed"} & set(types), types
            assert all(e["version"] <= 3 for e in caused if "version" in e)
            # nothing moved
            tenant = await settled(api, name)
            assert (tenant["state"], tenant["version"]) == ("ready", 3), tenant
            assert (await api.get(f"/v1/tenants/{name}/releases")).json() == releases
            assert sorted(r["title"] for r in (await app.get("/api/task?limit=51")).json()["items"]) == rows
            # a replay of a history that already holds replays adds the same again, no more
            again = await api.post(f"/v1/tenants/{name}/replay", json={})
            assert again.json()["queued"] == len(originals)
        finally:
            for n in (name, other, baseline):
                await api.delete(f"/v1/tenants/{n}")
