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


NUL_PATHS = [("GET", ""), ("DELETE", ""), ("PUT", "/domain"), ("GET", "/releases"), ("GET", "/events"),
             ("GET", "/source"), ("GET", "/env"), ("POST", "/replay"), ("POST", "/rollback"), ("PUT", "/app")]


async def _audit_rows(dsn: str, since: int) -> list[dict]:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        return [dict(r) for r in await conn.fetch("SELECT * FROM audit_log WHERE id > $1 ORDER BY id", since)]
    finally:
        await conn.close()


async def test_nul_and_names_that_cannot_be_tenants_are_4xx_and_every_refused_change_is_audited(running_platform):
    """PostgreSQL refuses NUL in text and jsonb: the API answers 404/422 (never 500) and the
    refused attempts are in the audit log, NUL escaped (no `audit.write_failed`)."""
    settings = running_platform.settings
    dsn = running_platform.conn.control_dsn
    token = json.loads((settings.home_dir / "credentials.json").read_text())["api_token"]
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        last = await conn.fetchval("SELECT coalesce(max(id), 0) FROM audit_log")
    finally:
        await conn.close()
    bodies = {"/domain": {"domain": None}, "/replay": {}, "/rollback": {}, "/app": {"app": SPEC}}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.api_port}", timeout=10,
                                 headers={"Authorization": f"Bearer {token}"}) as api:
        for name in ("a%00b", "0"):
            for method, rest in NUL_PATHS:
                resp = await api.request(method, f"/v1/tenants/{name}{rest}", json=bodies.get(rest))
                assert resp.status_code == 404, (method, name, rest, resp.text)
                assert set(resp.json()) == {"detail", "errors"}
        audit = await api.get("/v1/audit", params={"tenant": "a\x00b"})
        assert audit.status_code == 422 and audit.json()["errors"][0]["path"].endswith("tenant"), audit.text
        events = await api.get("/v1/tenants/zz-none/events", params={"type": "a\x00b"})
        assert events.status_code == 422, events.text
        domain = await api.put("/v1/tenants/zz-none/domain", json={"domain": "a\x00b.example.com"})
        assert domain.status_code == 422 and domain.json()["errors"][0]["path"] == "domain", domain.text
        replay = await api.post("/v1/tenants/zz-none/replay", json={"type": "Tenant\x00Requested"})
        assert replay.status_code == 422 and replay.json()["errors"][0]["path"] == "type", replay.text
    rows = await _audit_rows(dsn, last)
    changes = [(m, r) for m, r in NUL_PATHS if m != "GET" or r == "/env"]
    assert len(rows) == 2 * len(changes) + 2, [(r["action"], r["tenant_id"], r["status"]) for r in rows]
    assert all(r["outcome"] == "refused" for r in rows)
    assert {r["tenant_id"] for r in rows} == {"a\\x00b", "0", "zz-none"}
    (nul_domain,) = [r for r in rows if r["action"] == "tenant.domain" and r["status"] == 422]
    assert json.loads(nul_domain["request"])["domain"] == "a\\x00b.example.com"
    (nul_type,) = [r for r in rows if r["action"] == "tenant.replay" and r["status"] == 422]
    assert json.loads(nul_type["request"])["type"] == "Tenant\\x00Requested"
