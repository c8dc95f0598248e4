"""The API refuses an update the migrator would refuse, before writing anything: a
destructive change without the flag, a new required field without a default."""

from __future__ import annotations

import asyncio
import copy
import json
import uuid

import asyncpg
import httpx
import pytest

from tests.support.spec_versions import growing_spec

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120),
              pytest.mark.parametrize("running_platform", ["moto"], indirect=True)]


async def written(pool, name: str) -> tuple:
    return (await pool.fetchval("SELECT generation FROM tenants WHERE tenant_id = $1", name),
            await pool.fetchval("SELECT count(*) FROM outbox WHERE tenant_id = $1 AND producer = 'api'", name))


async def test_update_precheck(running_platform):
    settings = running_platform.settings
    token = json.loads((settings.home_dir / "credentials.json").read_text())["api_token"]
    name = f"mig-{uuid.uuid4().hex[:8]}"
    pool = await asyncpg.create_pool(running_platform.conn.control_dsn, min_size=1, max_size=2)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.api_port}", timeout=10,
                                 headers={"Authorization": f"Bearer {token}"}) as http:
        try:
            assert (await http.post("/v1/tenants", json={"name": name, "app": growing_spec(1)})).status_code == 202
            for _ in range(200):  # the running provisioner makes it updatable
                if (await http.get(f"/v1/tenants/{name}")).json()["progress"]["provisioned"]:
                    break
                await asyncio.sleep(0.1)
            before = await written(pool, name)

            without_done = copy.deepcopy(growing_spec(1))
            del without_done["entities"]["task"]["fields"]["done"]
            refused = await http.put(f"/v1/tenants/{name}/app", json={"app": without_done})
            assert refused.status_code == 422, refused.text
            assert refused.json()["detail"] == ("the app cannot be migrated to this spec: entities.task.fields.done: "
                                                "removing a field deletes its data; send --allow-destructive")
            assert await written(pool, name) == before

            no_default = growing_spec(1)
            no_default["entities"]["task"]["fields"]["due"] = {"type": "date", "required": True}
            refused = await http.put(f"/v1/tenants/{name}/app", json={"app": no_default, "allow_destructive": True})
            assert refused.status_code == 422 and "entities.task.fields.due: a new required field needs a default" \
                in refused.json()["detail"]
            assert await written(pool, name) == before

            accepted = await http.put(f"/v1/tenants/{name}/app", json={"app": without_done, "allow_destructive": True})
            assert accepted.status_code == 202, accepted.text
            assert await written(pool, name) == (before[0] + 1, before[1] + 1)
            added = await http.put(f"/v1/tenants/{name}/app", json={"app": {**without_done, "app": "Tasks v3"}})
            assert added.status_code == 202, "a change that loses nothing needs no flag"
        finally:
            await http.delete(f"/v1/tenants/{name}")
            await pool.close()
