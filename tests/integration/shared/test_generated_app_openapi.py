"""A running generated app (its built zipapp, the tenant's real PostgreSQL and Valkey) answers
as its own /openapi.json says: every route and status exercised, each response's status,
content type, headers and body checked against the document it serves; then Schemathesis
(pinned) fuzzes it from that document with a fixed seed and a bounded example count."""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi

from spec.load import load_app_spec
from tests.support.generated_app import EVERY_TYPE_SPEC, create_tables_sql, serve

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300),
              pytest.mark.parametrize("running_platform", ["moto"], indirect=True)]

FUZZ_SEED = 18_2026
FUZZ_EXAMPLES = 30  # per operation and generation mode (positive, negative)


def _operation(doc: dict[str, Any], method: str, path: str) -> tuple[str, dict[str, Any]]:
    """The documented (template, operation) a concrete request path matches."""
    for template, item in doc["paths"].items():
        pattern = "^" + re.sub(r"\\\{[a-z_]+\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path) and method in item:
            return template, item[method]
    raise AssertionError(f"{method.upper()} {path} is not in the document")


def conforms(doc: dict[str, Any], response: httpx.Response) -> str:
    """Assert `response` is what the document says its route answers; returns 'METHOD template status'."""
    method, path = response.request.method.lower(), response.request.url.path
    template, op = _operation(doc, method, path)
    status = str(response.status_code)
    assert status in op["responses"], f"{method} {template} answered an undocumented {status}: {response.text}"
    described = op["responses"][status]
    content = described.get("content", {})
    if not content:
        assert response.content == b"", (method, template, status)
    else:
        media = response.headers["content-type"].split(";")[0].strip()
        assert media in content, (method, template, status, media)
        if media == "application/json":
            schema = content[media]["schema"]
            validator = Draft202012Validator({**schema, "components": doc["components"]},
                                             format_checker=Draft202012Validator.FORMAT_CHECKER)
            errors = [e.message for e in validator.iter_errors(response.json())]
            assert not errors, (method, template, status, errors, response.text)
    for name, header in described.get("headers", {}).items():
        assert response.headers.get(name) in header["schema"]["enum"], (name, response.headers.get(name))
    return f"{method.upper()} {template} {status}"


@pytest.fixture
async def served_with_doc(res, tenant):
    async with serve(res, tenant, load_app_spec(EVERY_TYPE_SPEC), create_tables_sql) as (client, env):
        answer = await client.get("/openapi.json")
        assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
        doc = answer.json()
        validate_openapi(doc)
        yield client, doc


async def test_every_route_and_status_answers_as_the_document_says(served_with_doc):
    client, doc = served_with_doc
    seen: list[str] = []

    async def call(method: str, url: str, **kw: Any) -> httpx.Response:
        response = await client.request(method, url, **kw)
        seen.append(conforms(doc, response))
        return response

    assert doc["info"]["version"] == "7"  # the release the runtime names (APP_VERSION)
    await call("GET", "/healthz")
    await call("GET", "/openapi.json")
    docs = await call("GET", "/docs")
    assert "default-src 'none'" in docs.headers["content-security-policy"] and "Everything · API" in docs.text
    ada = (await call("POST", "/api/person", json={"name": "Ada", "role": "admin"})).json()
    full = {"title": "first", "body": "long text", "qty": 5, "price": 9.5, "done": True, "due": "2024-02-29",
            "at": "2024-01-01T10:00:00+00:00", "kind": "a", "owner": ada["id"]}
    row = (await call("POST", "/api/item", json=full)).json()
    await call("POST", "/api/item", json={"title": "minimal"})  # nulls and database defaults in the row
    for bad in ({}, {"title": "x" * 51}, {"title": "t", "owner": 424242}, {"title": "t", "price": 10**400},
                {"title": "t", "at": "0001-01-01T00:00:00+01:00"}):
        assert (await call("POST", "/api/item", json=bad)).status_code == 422, bad
    for raw in (b'{"title": "t\\ud800"}', b'{"t\\udfff": 1}'):  # unpaired surrogates, as JSON escapes
        assert (await call("POST", "/api/item", content=raw)).status_code == 422, raw
    assert (await call("POST", "/api/item", content=b"[" * 100_000)).status_code == 422  # nested too deeply
    assert (await call("POST", "/api/item", content=b"{not json")).status_code == 422
    await call("GET", "/api/item")
    await call("GET", "/api/item")  # a cache hit
    await call("GET", "/api/item", params={"done": "true", "limit": "1"})
    assert (await call("GET", "/api/item", params={"qty": "many"})).status_code == 422
    await call("GET", f"/api/item/{row['id']}")
    for missing in ("999999", "0", "-1", "abc", "²", str(2**63)):
        assert (await call("GET", f"/api/item/{missing}")).status_code == 404, missing
    await call("PATCH", f"/api/item/{row['id']}", json={"qty": 6, "body": None})
    assert (await call("PATCH", f"/api/item/{row['id']}", json={})).status_code == 422
    assert (await call("PATCH", f"/api/item/{row['id']}", json={"owner": ada["id"] + 1000})).status_code == 422
    assert (await call("PATCH", "/api/item/999999", json={"qty": 1})).status_code == 404
    assert (await call("DELETE", f"/api/person/{ada['id']}")).status_code == 409
    assert (await call("DELETE", f"/api/item/{row['id']}")).status_code == 204
    assert (await call("DELETE", f"/api/item/{row['id']}")).status_code == 404
    await call("GET", "/")
    await call("GET", "/people")
    expected = {"GET /healthz 200", "GET /openapi.json 200", "GET /docs 200", "GET / 200", "GET /people 200",
                *(f"{m} /api/{e} {s}" for e in ("item", "person") for m, s in [("POST", 201)]),
                "POST /api/item 422", "GET /api/item 200", "GET /api/item 422", "GET /api/item/{row_id} 200",
                "GET /api/item/{row_id} 404", "PATCH /api/item/{row_id} 200", "PATCH /api/item/{row_id} 422",
                "PATCH /api/item/{row_id} 404", "DELETE /api/person/{row_id} 409",
                "DELETE /api/item/{row_id} 204", "DELETE /api/item/{row_id} 404"}
    assert set(seen) == expected


async def test_schemathesis_finds_nothing_against_the_generated_app(served_with_doc):
    """A bounded, seeded fuzz run from the app's own document: no 5xx, and every response's
    status, content type and body as documented (positive and negative cases)."""
    import schemathesis
    from hypothesis import HealthCheck, given, seed, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                                   status_code_conformance)

    client, doc = served_with_doc
    base_url = str(client.base_url)
    schema = schemathesis.openapi.from_dict(doc)
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    cases: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    unnegatable: list[str] = []

    def fuzz() -> None:
        for result in schema.get_all_operations():
            operation = result.ok()
            for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

                @seed(FUZZ_SEED)
                @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None, derandomize=False,
                          suppress_health_check=list(HealthCheck))
                @given(case=operation.as_strategy(generation_mode=mode))
                def run(case: Any) -> None:
                    response = case.call_and_validate(base_url=base_url, checks=checks, timeout=10)
                    cases[f"{operation.label} {mode.value}"] += 1
                    statuses[response.status_code] += 1

                try:
                    run()
                except Unsatisfiable:  # nothing to negate (no parameters, no body): /healthz, the pages
                    assert mode == schemathesis.GenerationMode.NEGATIVE, operation.label
                    unnegatable.append(operation.label)

    started = time.monotonic()
    await asyncio.to_thread(fuzz)
    print(f"schemathesis seed={FUZZ_SEED} cases={sum(cases.values())} in {time.monotonic() - started:.1f}s "
          f"statuses={dict(sorted(statuses.items()))} no negative cases for: {', '.join(unnegatable)}")
    for label, count in sorted(cases.items()):
        print(f"  {count:4d} {label}")
    assert sum(cases.values()) >= 200 and not any(s >= 500 for s in statuses)
    assert {200, 201, 404, 422} <= set(statuses), statuses  # reached the stored rows and the refusals
