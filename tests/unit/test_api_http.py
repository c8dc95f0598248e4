"""The API's request guard, error bodies and input checks, without servers."""

from __future__ import annotations

import json

import httpx
import pytest

from services.api.requests import check_domain
from services.api.guard import Guard
from services.api.views import validation_errors

TOKEN = "t0ken-" + "x" * 40
LIMIT = 1000


async def echo(scope, receive, send):
    """Stands in for the FastAPI app: answers with the body it received."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": json.dumps({"got": len(body)}).encode()})


@pytest.fixture
def client():
    transport = httpx.ASGITransport(app=Guard(echo, TOKEN, LIMIT))
    return httpx.AsyncClient(transport=transport, base_url="http://api")


AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}, {"Authorization": TOKEN},
    {"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": "Bearer "},
], ids=["none", "wrong", "basic", "no-scheme", "longer", "empty"])
async def test_v1_without_the_right_token_is_401_and_never_reaches_the_app(client, headers):
    resp = await client.post("/v1/tenants", content=b"{}", headers=headers)
    assert resp.status_code == 401
    assert "bearer token" in resp.json()["detail"] and resp.headers["www-authenticate"].startswith("Bearer")
    assert TOKEN not in resp.text


async def test_health_and_openapi_need_no_token(client):
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/openapi.json")).status_code == 200
    assert (await client.get("/v1")).status_code == 401, "the prefix itself is protected"


async def test_the_body_reaches_the_app_once_authorized(client):
    resp = await client.post("/v1/tenants", content=b'{"a": 1}', headers=AUTH | {"content-type": "application/json"})
    assert resp.json() == {"got": 8}


async def test_declared_oversize_body_is_413(client):
    resp = await client.post("/v1/tenants", content=b"x" * (LIMIT + 1), headers=AUTH)
    assert resp.status_code == 413 and f"limit is {LIMIT} bytes" in resp.json()["detail"]


async def test_streamed_oversize_body_is_413(client):
    async def chunks():
        for _ in range(10):
            yield b"y" * 300

    resp = await client.post("/v1/tenants", content=chunks(), headers=AUTH)
    assert resp.status_code == 413 and "more than" in resp.json()["detail"]


async def test_non_json_body_is_415(client):
    resp = await client.post("/v1/tenants", content=b"name: a", headers=AUTH | {"content-type": "text/yaml"})
    assert resp.status_code == 415 and "application/json" in resp.json()["detail"]


@pytest.mark.parametrize("value, expected", [
    ("Shop.Example.COM.", "shop.example.com"),
    ("a.b", "a.b"),
    ("xn--bcher-kva.example", "xn--bcher-kva.example"),
])
def test_domains_are_normalised(value, expected):
    assert check_domain(value) == expected


@pytest.mark.parametrize("value, fragment", [
    ("localhost", "fully qualified"),
    ("shop.localhost", "reserved suffix"),
    ("printer.local", "reserved suffix"),
    ("10.0.0.1", "fully qualified"),
    ("*.example.com", "wildcards"),
    ("bücher.example", "punycode"),
    ("-bad.example.com", "fully qualified"),
    ("a..b", "fully qualified"),
    ("a" * 64 + ".com", "fully qualified"),
    ("has space.com", "fully qualified"),
    ("example", "fully qualified"),
])
def test_bad_domains_say_what_is_wrong(value, fragment):
    with pytest.raises(ValueError) as info:
        check_domain(value)
    assert fragment in str(info.value)


def test_validation_errors_name_the_field():
    status, body = validation_errors([
        {"type": "missing", "loc": ("body", "app"), "msg": "Field required"},
        {"type": "value_error", "loc": ("body", "name"), "msg": "Value error, tenant id 'A' must be ..."},
    ])
    assert status == 422
    assert body["errors"] == [{"path": "app", "message": "is required"},
                              {"path": "name", "message": "tenant id 'A' must be ..."}]
    assert body["detail"] == "app: is required; name: tenant id 'A' must be ..."


def test_malformed_json_is_400():
    status, body = validation_errors([{"type": "json_invalid", "loc": ("body", 3), "msg": "JSON decode error",
                                       "ctx": {"error": "Expecting value"}}])
    assert status == 400 and body["detail"] == "the body is not valid JSON (Expecting value)"


def test_the_openapi_document_builds_and_documents_every_route():
    from services.api.app import create_app
    from services.api.http import ApiContext

    doc = create_app(ApiContext(pool=None, edge_port=8480, name_prefix="hostplane", secrets=None), TOKEN).app.openapi()
    assert set(doc["paths"]) == {"/healthz", "/livez", "/v1/tenants", "/v1/tenants/{name}", "/v1/tenants/{name}/app",
                                 "/v1/tenants/{name}/events", "/v1/tenants/{name}/replay", "/v1/tenants/{name}/env",
                                 "/v1/audit", "/v1/tenants/{name}/source", "/v1/tenants/{name}/domain",
                                 "/v1/tenants/{name}/releases", "/v1/tenants/{name}/rollback",
                                 "/v1/tenants/{name}/idle-after"}
    assert set(doc["paths"]["/v1/tenants/{name}/app"]) == {"put"}
    idle = doc["paths"]["/v1/tenants/{name}/idle-after"]["put"]
    assert {"200", "202", "404", "409", "422"} <= set(idle["responses"])
    assert doc["components"]["schemas"]["ChangeIdleAfter"]["required"] == ["idle_after_s"]
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert doc["components"]["schemas"]["CreateTenant"]["required"] == ["name", "app"]
