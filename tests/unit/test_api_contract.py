"""The API's contract is its OpenAPI document: one error schema for every 4xx, the real
content types, no 5xx on names that cannot be tenants or on NUL, and every refused change
audited (cleaned, and a failing audit write fails the request). No servers: a fake pool."""

from __future__ import annotations

import json

import httpx
import jsonschema
import pytest

from services.api import audit
from services.api.app import create_app
from services.api.http import ApiContext

TOKEN = "t0ken-" + "x" * 40
AUTH = {"Authorization": f"Bearer {TOKEN}", "content-type": "application/json"}


class FakePool:
    """Records audit inserts; any other SQL is a test failure (nothing may reach the store)."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.rows: list[tuple] = []

    async def execute(self, sql: str, *args):
        assert sql.startswith("INSERT INTO audit_log"), sql
        for value in args:  # what asyncpg and PostgreSQL refuse in text/jsonb
            if isinstance(value, str):
                assert "\x00" not in value and "\\u0000" not in value
                value.encode("utf-8")  # no lone surrogate
        if self.fail:
            raise ConnectionError("the database is away")
        self.rows.append(args)

    async def fetchrow(self, *a):
        raise AssertionError(f"no SQL expected: {a[0]}")

    fetch = fetchval = fetchrow


def _app(pool):
    return create_app(ApiContext(pool=pool, edge_port=8480, name_prefix="hostplane", secrets=None), TOKEN)


def _doc():
    return _app(None).app.openapi()


def _error_schema(doc):
    schemas = doc["components"]["schemas"]
    return {**schemas["Error"], "$defs": schemas}


def _check_error(doc, body):
    schema = json.loads(json.dumps(_error_schema(doc)).replace("#/components/schemas/", "#/$defs/"))
    jsonschema.validate(body, schema)


def test_every_v1_operation_documents_its_errors_with_the_one_error_schema():
    doc = _doc()
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if not path.startswith("/v1/"):
                continue
            for code in ("401", "413", "415", "422") + (("500",) if method != "get" or path.endswith("/env") else ()):
                ref = op["responses"][code]["content"]["application/json"]["schema"]["$ref"]
                assert ref == "#/components/schemas/Error", (method, path, code)
            if "{name}" in path:
                assert "404" in op["responses"], (method, path)
            if "requestBody" in op:
                assert {"400", "413", "415"} <= set(op["responses"]), (method, path)


def test_the_document_says_what_each_route_really_answers():
    doc = _doc()
    source = doc["paths"]["/v1/tenants/{name}/source"]["get"]["responses"]["200"]["content"]
    assert list(source) == ["application/zip"]
    domain = doc["paths"]["/v1/tenants/{name}/domain"]["put"]["responses"]
    assert {"200", "202", "409"} <= set(domain)
    assert "409" in doc["paths"]["/v1/tenants/{name}/rollback"]["post"]["responses"]
    assert set(doc["components"]["schemas"]["Error"]["required"]) == {"detail", "errors"}


@pytest.mark.parametrize("method, path, body", [
    ("POST", "/v1/tenants/0/rollback", {}),
    ("GET", "/v1/tenants/a%00b", None), ("DELETE", "/v1/tenants/a%00b", None),
    ("PUT", "/v1/tenants/a%00b/domain", {"domain": None}), ("GET", "/v1/tenants/a%00b/releases", None),
    ("GET", "/v1/tenants/a%00b/events", None), ("GET", "/v1/tenants/a%00b/source", None),
    ("GET", "/v1/tenants/a%00b/env", None), ("POST", "/v1/tenants/a%00b/replay", {}),
    ("PUT", "/v1/tenants/Upper/app", {"app": "x"}), ("POST", "/v1/tenants/a%0Ab/source", {"source_zip": ""}),
    ("DELETE", "/v1/tenants/a%2Fapp", None), ("GET", "/v1/tenants/a%2Fapp", None),  # was 405 (decoded: another route)
    ("POST", "/v1/tenants/x%2Fsource", {"source_zip": ""}),  # was POST …/source for tenant 'x'
])
async def test_a_name_that_cannot_be_a_tenant_is_404_with_the_error_schema(method, path, body):
    pool = FakePool()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app(pool)), base_url="http://api") as api:
        resp = await api.request(method, path, headers=AUTH, content=json.dumps(body) if body is not None else None)
    assert resp.status_code == 404, resp.text
    _check_error(_doc(), resp.json())
    if method != "GET":  # a refused change leaves its row, the name cleaned
        (row,) = pool.rows
        assert row[7] == 404 and row[8] == "refused" and "\x00" not in (row[5] or "")


@pytest.mark.parametrize("method, path, body, field", [
    ("PUT", "/v1/tenants/shop/domain", {"domain": "a\x00b.example.com"}, "domain"),
    ("POST", "/v1/tenants/shop/replay", {"type": "Tenant\x00Requested"}, "type"),
    ("GET", "/v1/audit?tenant=a%00b", None, "tenant"),
    ("GET", "/v1/tenants/shop/events?type=a%00b", None, "type"),
])
async def test_nul_in_a_field_is_422_and_a_refused_change_is_audited(method, path, body, field):
    pool = FakePool()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app(pool)), base_url="http://api") as api:
        resp = await api.request(method, path, headers=AUTH, content=json.dumps(body) if body is not None else None)
    assert resp.status_code == 422, resp.text
    assert any(e["path"].split(".")[-1] == field for e in resp.json()["errors"]), resp.text
    _check_error(_doc(), resp.json())
    if method != "GET":
        (row,) = pool.rows
        assert row[8] == "refused" and "\\x00" in row[6], "the refused value is kept, escaped"


async def test_bad_json_has_one_body_shape():
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app(FakePool())), base_url="http://api") as api:
        syntax = await api.post("/v1/tenants", headers=AUTH, content=b"{nope")
        encoding = await api.post("/v1/tenants", headers=AUTH, content=b'{"name": "\xff\xfe"}')
        unknown = await api.get("/v1/nothing-here", headers=AUTH)
    assert syntax.status_code == encoding.status_code == 400
    for resp in (syntax, encoding, unknown):
        _check_error(_doc(), resp.json())
        assert resp.json()["detail"]
    assert unknown.status_code == 404


async def test_a_change_whose_audit_cannot_be_written_fails():
    pool = FakePool(fail=True)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app(pool)), base_url="http://api") as api:
        resp = await api.post("/v1/tenants/0/rollback", headers=AUTH, content=b"{}")
        read = await api.get("/v1/tenants/0", headers=AUTH)
    assert resp.status_code == 500 and "audited" in resp.json()["detail"]
    assert read.status_code == 404, "reads are not audited, so they do not depend on it"


async def test_record_cleans_and_strict_raises():
    pool = FakePool()
    await audit.record(pool, audit.AuditEntry(identity="i", channel="api", action="a\x00", status=422,
                                              outcome="refused", tenant_id="t\udc00", actor="x\x1b[31m",
                                              request={"domain\x00": ["v\x00"]}, error="e\x00"))
    (row,) = pool.rows
    assert row[4] == "a\\x00" and row[5] == "t\\udc00" and row[1] == "x\\x1b[31m"
    assert json.loads(row[6]) == {"domain\\x00": ["v\\x00"]} and row[9] == "e\\x00"
    with pytest.raises(audit.AuditWriteFailed):
        await audit.record(FakePool(fail=True), audit.AuditEntry(identity="i", channel="api", action="a",
                                                                 status=200, outcome="accepted"), strict=True)
    await audit.record(FakePool(fail=True), audit.AuditEntry(identity="i", channel="cli", action="a",
                                                             status=200, outcome="accepted"))  # logged, not raised
