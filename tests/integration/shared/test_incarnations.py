"""Replays stay harmless across incarnations, through a real platform (API, every stage
service, reloader, edge): create t, update it, delete it, create it again; replaying the
first incarnation's TenantDeletionRequested and AppUpdateRequested changes nothing: t
keeps serving its rows, its release, route and secret stay. A command the API never
recorded (published under the API's own source, as only a trusted identity could) builds
nothing either."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from artifacts.store import ArtifactStore, store_root
from contracts.app_spec import spec_ref
from spec.load import load_app_spec
from contracts.envelope import Envelope
from contracts.events_v1 import AppUpdateRequested
from contracts.tenant import tenant_names
from events.publisher import Publisher
from events.topology import topology
from core.aws import aws_client
from tests.support.platform_api import settled
from tests.support.spec_versions import tasks_spec

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300),
              pytest.mark.parametrize("running_platform", ["moto"], indirect=True)]


async def gone(http: httpx.AsyncClient, name: str) -> None:
    for _ in range(600):
        answer = await http.get(f"/v1/tenants/{name}")
        if answer.status_code == 404 or answer.json().get("state") == "deleted":
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{name} was not deleted: {answer.text}")


async def handled(db: asyncpg.Connection, consumer: str, keys: list[str]) -> None:
    """Wait until `consumer` handled (inbox) every dedup key."""
    for _ in range(600):
        done = await db.fetchval("SELECT count(*) FROM inbox WHERE consumer = $1 AND dedup_key = ANY($2::text[])",
                                 consumer, keys)
        if done == len(keys):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{consumer} did not handle {keys}")


async def replay_keys(db: asyncpg.Connection, name: str, event_type: str) -> list[str]:
    rows = await db.fetch("SELECT event_id, replay_id FROM outbox WHERE tenant_id = $1 AND event_type = $2 "
                          "AND replay_id IS NOT NULL", name, event_type)
    return [f"{r['event_id']}:{r['replay_id']}" for r in rows]


async def snapshot(settings: Any, app: httpx.AsyncClient, name: str) -> dict[str, Any]:
    store = ArtifactStore(store_root(settings))
    names = tenant_names(name, prefix=settings.name_prefix)
    async with aws_client("secretsmanager", settings) as sm:
        secret = (await sm.describe_secret(SecretId=names.secret))["ARN"]
    rows = (await app.get("/api/task?limit=50")).json()["items"]
    return {"current": store.read_current(name), "releases": [m.version for m in store.releases(name)],
            "secret": secret, "rows": sorted(r["title"] for r in rows)}


async def test_replaying_the_first_incarnation_changes_nothing_for_the_second(running_platform):
    settings = running_platform.settings
    token = json.loads((settings.home_dir / "credentials.json").read_text())["api_token"]
    name = f"inc-{uuid.uuid4().hex[:8]}"
    api = httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.api_port}", timeout=10,
                            headers={"Authorization": f"Bearer {token}"})
    app = httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.edge_port}", timeout=10,
                            headers={"Host": f"{name}.localhost"})
    db = await asyncpg.connect(running_platform.conn.control_dsn)
    async with api, app:
        try:
            # first incarnation: created, updated (an AppUpdateRequested to replay later), deleted
            assert (await api.post("/v1/tenants", json={"name": name, "app": tasks_spec(1)})).status_code == 202
            await settled(api, name, 1)
            assert (await api.put(f"/v1/tenants/{name}/app", json={"app": tasks_spec(2)})).status_code == 202
            await settled(api, name, 2)
            first = await db.fetchval("SELECT incarnation FROM tenants WHERE tenant_id = $1", name)
            assert (await api.delete(f"/v1/tenants/{name}")).status_code == 202
            await gone(api, name)

            # second incarnation, serving its own row
            assert (await api.post("/v1/tenants", json={"name": name, "app": tasks_spec(1)})).status_code == 202
            assert (await settled(api, name, 1))["state"] == "ready"
            second = await db.fetchval("SELECT incarnation FROM tenants WHERE tenant_id = $1", name)
            assert second != first and first is not None
            assert (await app.post("/api/task", json={"title": "second life"})).status_code == 201
            before = await snapshot(settings, app, name)
            assert before["rows"] == ["second life"] and before["current"].version == 1

            for event_type in ("TenantDeletionRequested", "AppUpdateRequested"):
                answer = await api.post(f"/v1/tenants/{name}/replay", json={"type": event_type})
                assert answer.status_code == 202, answer.text
            deletions = await replay_keys(db, name, "TenantDeletionRequested")
            updates = await replay_keys(db, name, "AppUpdateRequested")
            assert len(deletions) == 1 and len(updates) == 1
            await handled(db, "router-config", deletions)
            await handled(db, "deprovisioner", deletions)
            await handled(db, "builder", updates)
            await handled(db, "api", deletions + updates)

            # a command the API never recorded, under the API's own source: nothing is built
            digest = load_app_spec(tasks_spec(2)).digest()  # stored by the first incarnation's update
            forged = Envelope.new(AppUpdateRequested(spec_ref=spec_ref(digest), spec_sha256=digest,
                                                     allow_destructive=True),
                                  tenant_id=name, producer="api", incarnation=second)
            async with Publisher(settings, topology(settings.name_prefix).bus_name) as pub:
                await pub.publish([forged])
            await handled(db, "builder", [forged.dedup_key])

            await asyncio.sleep(1.0)  # anything the replays had set off would be under way by now
            tenant = (await api.get(f"/v1/tenants/{name}")).json()
            assert (tenant["state"], tenant["version"]) == ("ready", 1), tenant
            assert await snapshot(settings, app, name) == before
            assert (await app.get("/api/task?limit=50")).status_code == 200
            state = await db.fetchrow("SELECT state FROM provisioned_tenants WHERE tenant_id = $1", name)
            assert state["state"] == "provisioned"
            route = await db.fetchrow("SELECT deleted_at FROM routes WHERE tenant_id = $1", name)
            assert route["deleted_at"] is None
        finally:
            await db.close()
