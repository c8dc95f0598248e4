"""A tenant's edge (`pooled` | `dedicated`, AWS only) chosen at POST /v1/tenants: validated,
written with the tenant row, carried on TenantRequested and shown in its status, through
the whole API stack (guard, audit, routes, commands) over a recording stand-in for the
database. tests/integration/test_api.py runs the same path against PostgreSQL."""

from __future__ import annotations

import contextlib
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from contracts.envelope import Envelope
from contracts.events_v1 import TenantRequested
from services.api import commands, store
from services.api.app import create_app
from services.api.http import ApiContext

TOKEN = "t0ken-" + "x" * 40
SPEC = (Path(__file__).resolve().parents[2] / "examples" / "tasks.yaml").read_text()
NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def _columns(sql: str, keyword: str, end: str) -> list[str]:
    """The column names between `keyword` and `end` (a SELECT list or an INSERT's columns),
    each as its result name (alias, or the name after the table's dot)."""
    listed = sql.split(keyword, 1)[1].split(end, 1)[0]
    return [c.strip().split()[-1].split(".")[-1] for c in listed.split(",")]


class FakeDb:
    """The pool and its connection in one: every write is recorded; no tenant exists until
    a create inserts its row, and the status view answers with only the columns its
    SELECT names (a column it forgot is a KeyError in the view, as it would be)."""

    def __init__(self) -> None:
        self.writes: list[str] = []
        self.tenant: dict[str, Any] | None = None

    @contextlib.asynccontextmanager
    async def acquire(self) -> Any:
        yield self

    def transaction(self) -> Any:
        return contextlib.nullcontext()

    async def execute(self, sql: str, *args: Any) -> str:
        self.writes.append(" ".join(sql.split()))
        if sql.lstrip().startswith("INSERT INTO tenants ("):
            self.tenant = dict(zip(_columns(sql, "INSERT INTO tenants (", ")"), args, strict=True))
        return "OK"

    async def executemany(self, sql: str, rows: list[Any]) -> None:
        self.writes += [" ".join(sql.split())] * len(rows)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return None  # no domain owner, no earlier request

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        if "FROM tenants t" not in sql or self.tenant is None:
            return None  # no tenant row or status before the create
        status = {"state": "requested", "stage": "queued", "version": None, "last_error": None,
                  "last_error_stage": None, "last_error_at": None, "generation": self.tenant["generation"],
                  "request_kind": "create", "facts": "{}", "last_event_id": None, "last_event_type": None,
                  "last_event_at": None, "created_at": NOW, "updated_at": NOW, "correlation_id": uuid.uuid4(),
                  "request_at": NOW, "requested_by": "me@cli", "requested_at": NOW, "deleted_at": None}
        known = self.tenant | status
        return {name: known[name] for name in _columns(sql, "SELECT", "FROM")}

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        row = await self.fetchrow(sql, *args)
        return [row] if row is not None else []

    def data_writes(self) -> list[str]:
        """Writes but the audit trail's (a refusal is audited too)."""
        return [w for w in self.writes if not w.startswith("INSERT INTO audit_log")]


@pytest.fixture
def db() -> FakeDb:
    return FakeDb()


@pytest.fixture
def published(monkeypatch) -> list[Envelope]:
    """The envelopes the create put in the outbox."""
    sent: list[Envelope] = []

    async def add_to_outbox(conn: Any, envelopes: Any) -> None:
        sent.extend(envelopes)

    monkeypatch.setattr(commands, "add_to_outbox", add_to_outbox)
    return sent


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
    assert detail["schema_version"] == "1.2" and detail["data"]["edge"] == edge
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
