"""The API as `hostplane up` runs it (uvicorn, PostgreSQL) answers hostile input with a 422
naming the field: a tenant name with a trailing newline (it used to pass, and the server
then dropped the connection writing the Location header), a 5,000-digit number in a spec
(a 500, or FastAPI's 400), an unpaired surrogate. Nothing is written."""

from __future__ import annotations

import json

import asyncpg
import httpx
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120),
              pytest.mark.parametrize("running_platform", ["moto"], indirect=True)]

SPEC = "app: Notes\nentities:\n  note:\n    fields:\n      text: {type: string}\n"
BIG = "9" * 5000


async def _counts(dsn: str) -> tuple[int, int]:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        return (await conn.fetchval("SELECT count(*) FROM tenants"),
                await conn.fetchval("SELECT count(*) FROM outbox WHERE producer = 'api'"))
    finally:
        await conn.close()


@pytest.mark.parametrize("body, path", [
    (json.dumps({"name": "newline\n", "app": SPEC}), "name"),
    (json.dumps({"name": "crlf\r\n", "app": SPEC}), "name"),
    ('{"name": "big", "app": {"app": "x", "entities": {"t": {"fields": {"a": {"type": "number", "max": %s}}}}}}'
     % BIG, "app.entities.t.fields.a.max"),
    (json.dumps({"name": "bigyaml", "app": SPEC.replace("{type: string}", "{type: integer, default: %s}" % BIG)}),
     "app.entities.note.fields.text.default"),
    (json.dumps({"name": "key", "app": {"app": "x", "entities": {"note\n": {"fields": {"a": {"type": "string"}}}}}}),
     "app.entities['note\\n']"),
    ('{"name": "surrogate", "app": {"app": "x\\udc00", "entities": {"t": {"fields": {"a": {"type": "string"}}}}}}',
     "app.app"),
], ids=["name-newline", "name-crlf", "number-object", "number-yaml", "entity-newline", "surrogate"])
async def test_hostile_input_is_422_naming_the_field_and_writes_nothing(running_platform, body, path):
    settings = running_platform.settings
    token = json.loads((settings.home_dir / "credentials.json").read_text())["api_token"]
    before = await _counts(running_platform.conn.control_dsn)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.api_port}", timeout=10,
                                 headers={"Authorization": f"Bearer {token}",
                                          "content-type": "application/json"}) as api:
        resp = await api.post("/v1/tenants", content=body.encode())
        assert resp.status_code == 422, resp.text
        assert [e["path"] for e in resp.json()["errors"]] == [path]
        assert (await api.get(f"/v1/tenants/{'newline%0A'}")).status_code == 404  # a name in the URL too
    assert await _counts(running_platform.conn.control_dsn) == before
