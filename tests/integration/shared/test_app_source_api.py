"""`/v1/tenants/{name}/source` (export / deploy) and `static_zip` on the real API service of
the shared moto platform: every bad upload is a 4xx with a clear message, and nothing is
stored or emitted."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import stat
import zipfile
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from hostplane.local.ephemeral import RunningPlatform
from spec.source import source_zip
from tests.support.spec_versions import TASKS_YAML

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240),
              pytest.mark.parametrize("running_platform", ["moto"], indirect=True)]
NAME = "src-api"


@pytest.fixture(scope="module")
def platform(running_platform) -> RunningPlatform:
    return running_platform


class Client:
    def __init__(self, platform: RunningPlatform, pool: asyncpg.Pool) -> None:
        token = json.loads((platform.settings.home_dir / "credentials.json").read_text())["api_token"]
        base = f"http://127.0.0.1:{platform.settings.api_port}"
        self.pool = pool
        self.http = httpx.AsyncClient(base_url=base, timeout=20, headers={"Authorization": f"Bearer {token}"})
        self.anon = httpx.AsyncClient(base_url=base, timeout=20)

    async def counts(self) -> dict[str, int]:
        return {"sources": await self.pool.fetchval("SELECT count(*) FROM app_sources"),
                "requests": await self.pool.fetchval("SELECT count(*) FROM tenant_requests"),
                "api events": await self.pool.fetchval("SELECT count(*) FROM outbox WHERE producer = 'api'")}


@pytest.fixture(scope="module")
async def api(platform) -> AsyncIterator[Client]:
    pool = await asyncpg.create_pool(platform.conn.control_dsn, min_size=1, max_size=2)
    client = Client(platform, pool)
    try:
        resp = await client.http.post("/v1/tenants", json={"name": NAME, "app": TASKS_YAML})
        assert resp.status_code == 202, resp.text
        deadline = asyncio.get_running_loop().time() + 60
        while (state := (await client.http.get(f"/v1/tenants/{NAME}")).json()["state"]) != "ready":
            assert state != "failed" and asyncio.get_running_loop().time() < deadline, state
            await asyncio.sleep(0.1)
        yield client
    finally:
        await client.http.aclose()
        await client.anon.aclose()
        await pool.close()


def b64(body: bytes) -> str:
    return base64.b64encode(body).decode()


def zip_of(entries: dict[str, bytes], *, link: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, body in entries.items():
            zf.writestr(zipfile.ZipInfo(name), body)  # 1980: the same bytes at every call
        if link:
            info = zipfile.ZipInfo(link)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


async def exported(api: Client) -> dict[str, str]:
    resp = await api.http.get(f"/v1/tenants/{NAME}/source")
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(resp.content)) as zf:
        return {n: zf.read(n).decode() for n in zf.namelist()}


async def test_export_needs_a_token_and_a_known_tenant(api):
    assert "app.py" in await exported(api)
    anon = await api.anon.get(f"/v1/tenants/{NAME}/source")
    assert anon.status_code == 401 and "PK" not in anon.text
    missing = await api.http.get("/v1/tenants/nobody/source")
    assert missing.status_code == 404 and "nobody" in missing.json()["detail"]


async def test_bad_uploads_are_refused_and_change_nothing(api):
    files = await exported(api)
    good = source_zip(files)
    before = await api.counts()

    async def deploy(body: dict, client=None, name: str = NAME) -> httpx.Response:
        return await (client or api.http).post(f"/v1/tenants/{name}/source", json=body)

    cases = [
        ({"source_zip": b64(good)}, api.anon, NAME, 401, "token"),
        ({"source_zip": b64(good)}, None, "nobody", 404, "nobody"),
        ({"source_zip": "not base64!"}, None, NAME, 422, "not base64"),
        ({"source_zip": b64(b"PK\x03\x04 not really a zip")}, None, NAME, 422, "not a zip"),
        ({"source_zip": b64(zip_of({**{k: v.encode() for k, v in files.items()}, "../evil.py": b"x = 1\n"}))},
         None, NAME, 422, "../evil.py"),
        ({"source_zip": b64(zip_of({**{k: v.encode() for k, v in files.items()}, "/etc/cron.py": b"x = 1\n"}))},
         None, NAME, 422, "/etc/cron.py"),
        ({"source_zip": b64(zip_of({**{k: v.encode() for k, v in files.items()}, "static/../../x.css": b"x"}))},
         None, NAME, 422, "static/../../x.css"),
        ({"source_zip": b64(zip_of({k: v.encode() for k, v in files.items()}, link="static/passwd"))},
         None, NAME, 422, "symbolic link"),
        ({"source_zip": b64(source_zip(dict(files, **{"app.py": files["app.py"] + "\ndef broken(:\n"})))},
         None, NAME, 422, f"app.py:{files['app.py'].count(chr(10)) + 2}"),
        ({"source_zip": b64(source_zip(dict(files, **{"spec.json": "{}"})))}, None, NAME, 422, "spec.json"),
        ({"source_zip": b64(good), "extra": 1}, None, NAME, 422, "extra"),
        ({"source_zip": b64(os.urandom(400 * 1024))}, None, NAME, 413, "the limit is 524288 bytes"),
    ]
    for body, client, name, status, needle in cases:
        resp = await deploy(body, client, name)
        text = resp.text
        assert resp.status_code == status, (needle, status, text[:300])
        assert needle.lower() in text.lower(), (needle, text[:300])
    assert await api.counts() == before


async def test_bad_static_folders_on_update_are_refused_and_change_nothing(api):
    before = await api.counts()
    cases = [
        (zip_of({"static/../secret.css": b"x"}), "static/../secret.css"),
        (zip_of({"app.py": b"x = 1\n"}), "only static/"),
        (zip_of({}), "no file under static/"),
        (zip_of({"static/a.css": b"x"}, link="static/link"), "symbolic link"),
        (zip_of({f"static/f{i}.txt": b"x" for i in range(301)}), "limit is 300"),
        (zip_of({"static/big.bin": os.urandom(300 * 1024)}), "limit is 262144"),
    ]
    for body, needle in cases:
        resp = await api.http.put(f"/v1/tenants/{NAME}/app", json={"app": TASKS_YAML, "static_zip": b64(body)})
        assert resp.status_code == 422 and needle in resp.text, (needle, resp.status_code, resp.text[:300])
    assert await api.counts() == before


async def test_the_same_static_folder_twice_is_no_change(api):
    bundle = b64(zip_of({"static/a.css": b"body{}"}))
    first = await api.http.put(f"/v1/tenants/{NAME}/app", json={"app": TASKS_YAML, "static_zip": bundle})
    assert first.status_code == 202, first.text
    before = await api.counts()
    again = await api.http.put(f"/v1/tenants/{NAME}/app", json={"app": TASKS_YAML, "static_zip": bundle})
    assert again.status_code == 200 and again.json()["changed"] is False
    assert await api.counts() == before
