"""A tenant's edge (`pooled` | `dedicated`, AWS only) chosen at POST /v1/tenants: validated,
written with the tenant row, carried on TenantRequested and shown in its status, through
the whole API stack (guard, audit, routes, commands) over a recording stand-in for the
database. tests/integration/test_api.py runs the same path against PostgreSQL."""

from __future__ import annotations

import json

import httpx
import pytest

from contracts.events_v1 import TenantRequested
from services.api import store
from services.api.app import create_app
from services.api.http import ApiContext
from tests.support.api_fakes import SPEC, TOKEN


@pytest.fixture
def client(db):
    app = create_app(ApiContext(pool=db, edge_port=8480, name_prefix="hostplane", secrets=None), TOKEN)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api",
                             headers={"Authorization": f"Bearer {TOKEN}"})


async def test_the_schema_upgrade_adds_the_column_to_an_existing_tenants_table():
    """An existing database gets the column from the same script a new one runs."""
    assert "ALTER TABLE tenants ADD COLUMN IF NOT EXISTS edge text;" in store.SCHEMA_SQL


@pytest.mark.parametrize("edge", ["pooled", "dedicated"])
async def test_an_edge_is_stored_put_on_the_request_event_and_shown(client, db, published, edge):
    resp = await client.post("/v1/tenants", json={"name": "acme", "app": SPEC, "edge": edge})
    assert resp.status_code == 202, resp.text
    assert db.tenant is not None and db.tenant["edge"] == edge
    [envelope] = published
    assert isinstance(envelope.data, TenantRequested) and envelope.data.edge == edge
    detail = json.loads(envelope.to_detail())
    assert detail["schema_version"] == "1.3" and detail["data"]["edge"] == edge
    assert resp.json()["tenant"]["edge"] == edge
    assert (await client.get("/v1/tenants/acme")).json()["edge"] == edge


async def test_no_edge_is_the_installations_default_shown_as_null(client, db, published):
    resp = await client.post("/v1/tenants", json={"name": "acme", "app": SPEC})
    assert resp.status_code == 202, resp.text
    assert db.tenant is not None and db.tenant["edge"] is None
    assert published[0].data.edge is None
    assert resp.json()["tenant"]["edge"] is None
    listed = (await client.get("/v1/tenants")).json()["tenants"]
    assert [t["edge"] for t in listed] == [None]


@pytest.mark.parametrize("bad", ["shared", "Pooled", "", "dedicated ", 1, True, ["pooled"], {"mode": "pooled"}])
async def test_a_bad_edge_is_a_422_naming_it_and_writes_nothing(client, db, published, bad):
    resp = await client.post("/v1/tenants", json={"name": "acme", "app": SPEC, "edge": bad})
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert body["detail"].startswith("edge: ") and "'pooled' or 'dedicated'" in body["detail"], body
    assert [e["path"] for e in body["errors"]] == ["edge"]
    assert db.data_writes() == [] and db.tenant is None and published == []
    assert len(db.writes) == 1, "the refusal is audited"


def test_the_openapi_document_offers_the_two_modes():
    doc = create_app(ApiContext(pool=None, edge_port=8480, name_prefix="hostplane", secrets=None), TOKEN).app.openapi()
    edge = doc["components"]["schemas"]["CreateTenant"]["properties"]["edge"]
    assert {"enum": ["pooled", "dedicated"], "type": "string"} in edge["anyOf"]
    assert {"type": "null"} in edge["anyOf"]
    assert "AWS" in edge["description"]
    assert "edge" not in doc["components"]["schemas"]["CreateTenant"]["required"]


async def test_the_dashboard_shows_the_edge_only_when_one_was_chosen(client, db, published):
    from services.api.dashboard.routes import _env

    await client.post("/v1/tenants", json={"name": "acme", "app": SPEC, "edge": "dedicated"})
    tenant = (await client.get("/v1/tenants/acme")).json()
    page = _env.get_template("_tenant_live.html")
    assert '<dd id="tenant-edge">dedicated</dd>' in page.render(tenant=tenant, events=[])
    assert "tenant-edge" not in page.render(tenant=tenant | {"edge": None}, events=[])
