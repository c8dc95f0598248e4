"""The status long-poll against the real API and PostgreSQL: a request naming the
document it has is answered when the tenant's status moves (the notice at commit), not at
its deadline; a request with nothing to wait for is answered at once."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import httpx
import pytest

from tests.support.platform_api import settled
from tests.support.spec_versions import tasks_spec

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180),
              pytest.mark.parametrize("running_platform", ["moto"], indirect=True)]


async def test_a_long_poll_is_answered_when_the_status_moves(running_platform):
    settings = running_platform.settings
    token = json.loads((settings.home_dir / "credentials.json").read_text())["api_token"]
    name = f"lp-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.api_port}", timeout=40,
                                 headers={"Authorization": f"Bearer {token}"}) as api:
        try:
            assert (await api.post("/v1/tenants", json={"name": name, "app": tasks_spec(1)})).status_code == 202
            ready = await settled(api, name, 1)
            assert ready["state"] == "ready"

            t0 = time.monotonic()
            idle = await api.get(f"/v1/tenants/{name}", params={"after": ready["updated_at"], "wait": 1})
            assert idle.json()["updated_at"] == ready["updated_at"] and 0.9 < time.monotonic() - t0 < 5

            t0 = time.monotonic()
            now = await api.get(f"/v1/tenants/{name}", params={"after": "not-the-current-one", "wait": 30})
            assert now.status_code == 200 and time.monotonic() - t0 < 2, "nothing to wait for"

            waiting = asyncio.create_task(api.get(f"/v1/tenants/{name}",
                                                  params={"after": ready["updated_at"], "wait": 30}))
            await asyncio.sleep(0.5)
            assert not waiting.done()
            t0 = time.monotonic()
            assert (await api.put(f"/v1/tenants/{name}/app", json={"app": tasks_spec(2)})).status_code == 202
            moved = (await waiting).json()
            assert moved["updated_at"] != ready["updated_at"] and time.monotonic() - t0 < 5
            assert moved["state"] in ("updating", "ready")

            bad = await api.get(f"/v1/tenants/{name}", params={"after": ready["updated_at"], "wait": 31})
            assert bad.status_code == 422, bad.text
        finally:
            await api.delete(f"/v1/tenants/{name}")
