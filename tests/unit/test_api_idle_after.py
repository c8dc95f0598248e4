"""Scale to zero at the API: a tenant's idle period (`idle_after_s`, 0 always on) chosen at
POST /v1/tenants is validated, written with the tenant row, carried on TenantRequested and
shown with the tenant's runtime, through the whole API stack over a recording stand-in for
the database; the runtime facts keep `tenants.runtime` at the newest one."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from contracts.envelope import Envelope
from contracts.events_v1 import (ReleaseActivated, RuntimeFailed, RuntimeSlept, RuntimeWoke, TenantChanged,
                                 TenantRequested)
from services.api import store
from services.api.app import create_app
from services.api.http import ApiContext
from services.api.projection import Facts
from services.api.views import TenantDoc, runtime_of
from tests.support.api_fakes import SPEC, TOKEN


@pytest.fixture
def client(db):
    app = create_app(ApiContext(pool=db, edge_port=8480, name_prefix="hostplane", secrets=None), TOKEN)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api",
                             headers={"Authorization": f"Bearer {TOKEN}"})


@pytest.mark.parametrize("idle", [0, 60, 31_536_000])
async def test_an_idle_period_is_stored_put_on_the_request_event_and_shown(client, db, published, idle):
    resp = await client.post("/v1/tenants", json={"name": "acme", "app": SPEC, "idle_after_s": idle})
    assert resp.status_code == 202, resp.text
    assert db.tenant is not None and db.tenant["idle_after_s"] == idle
    [envelope] = published
    assert isinstance(envelope.data, TenantRequested) and envelope.data.idle_after_s == idle
    shown = (await client.get("/v1/tenants/acme")).json()
    assert shown["idle_after_s"] == idle
    assert shown["runtime"] == "starting", "no release serves yet"


async def test_no_idle_period_is_the_platforms_default_shown_as_null(client, db, published):
    resp = await client.post("/v1/tenants", json={"name": "acme", "app": SPEC})
    assert resp.status_code == 202, resp.text
    assert db.tenant["idle_after_s"] is None and published[0].data.idle_after_s is None
    assert resp.json()["tenant"]["idle_after_s"] is None


@pytest.mark.parametrize("bad", [-1, 31_536_001, "60", 1.5, True, None.__class__.__name__, [60]])
async def test_a_bad_idle_period_is_a_422_naming_it_and_writes_nothing(client, db, published, bad):
    resp = await client.post("/v1/tenants", json={"name": "acme", "app": SPEC, "idle_after_s": bad})
    assert resp.status_code == 422, resp.text
    assert resp.json()["detail"].startswith("idle_after_s: "), resp.json()
    assert db.data_writes() == [] and db.tenant is None and published == []


def test_the_runtime_is_the_newest_fact_unless_no_release_ever_started():
    facts = Facts(active_version=3)
    assert runtime_of("ready", None, "asleep", facts) == "asleep"
    assert runtime_of("ready", None, None, facts) == "running"
    assert runtime_of("updating", "release", "starting", facts) == "starting"
    assert runtime_of("failed", "releasing", None, Facts()) == "failed"
    assert runtime_of("failed", "releasing", "running", facts) == "running", "the old release still serves"


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    async def execute(self, sql: str, *args) -> None:
        self.calls.append((" ".join(sql.split()), args))


def fact(data, at: datetime) -> Envelope:
    return Envelope.new(data, tenant_id="acme", producer="reloader").model_copy(update={"occurred_at": at})


async def test_runtime_facts_update_only_from_a_newer_fact_and_a_failure_keeps_its_reason():
    conn, at = Recorder(), datetime(2026, 12, 5, tzinfo=UTC)
    activated = ReleaseActivated(version=2, sha256="ab" * 32, swap_ms=3, health_ms=40)
    await store.record_runtime(conn, fact(RuntimeSlept(idle_s=900, version=2), at))
    await store.record_runtime(conn, fact(RuntimeWoke(trigger="request", asleep_s=5), at + timedelta(seconds=1)))
    await store.record_runtime(conn, fact(activated, at + timedelta(seconds=2)))
    await store.record_runtime(conn, fact(RuntimeFailed(reason="crash_loop", detail="died 3 times within 60 s"),
                                          at + timedelta(seconds=3)))
    await store.record_runtime(conn, fact(activated, at + timedelta(seconds=4)))  # running again
    assert [args[1] for _, args in conn.calls] == ["asleep", "starting", "running", "failed", "running"]
    assert all("runtime_at < $3" in sql for sql, _ in conn.calls), "an older or repeated fact changes nothing"
    failures = [args[3] and json.loads(args[3]) for _, args in conn.calls]
    assert failures == [None, None, None, {"reason": "crash_loop", "detail": "died 3 times within 60 s",
                                           "at": "2026-12-05T00:00:03+00:00"}, None], "cleared by the next fact"


async def test_a_fact_that_is_not_about_the_runtime_changes_nothing():
    conn = Recorder()
    changed = TenantChanged.model_construct(version=2)  # only its type is read
    await store.record_runtime(conn, fact(changed, datetime(2026, 12, 5, tzinfo=UTC)))
    assert conn.calls == []


async def test_a_failed_runtime_shows_why_and_a_serving_one_shows_nothing(client, db, published):
    assert (await client.post("/v1/tenants", json={"name": "acme", "app": SPEC})).status_code == 202
    why = {"reason": "port_taken", "detail": "127.0.0.1:10004 is held by another process",
           "at": "2026-12-05T00:00:03+00:00"}
    db.status = {"runtime": "failed", "runtime_failure": json.dumps(why)}
    failed = (await client.get("/v1/tenants/acme")).json()
    assert failed["runtime"] == "failed" and failed["runtime_failure"] == why
    TenantDoc.model_validate(failed)  # what the OpenAPI document says it is
    db.status = {"runtime": "running", "runtime_failure": None}
    assert (await client.get("/v1/tenants/acme")).json()["runtime_failure"] is None


def test_the_dashboard_shows_the_runtime_and_its_idle_period():
    from services.api.dashboard.routes import _env

    page = _env.get_template("_tenant_live.html")
    tenant = {"state": "ready", "stage": None, "waiting_for": None, "version": 2, "url": None, "edge": None,
              "domain_pending": None, "dns_records": [], "runtime": "asleep", "idle_after_s": 300,
              "runtime_failure": None, "last_error": None,
              "request": {"kind": "create", "generation": 1, "requested_by": "me", "correlation_id": "c"}}
    html = page.render(tenant=tenant, events=[])
    assert 'id="tenant-runtime">asleep</span>' in html and "sleeps after 300 s" in html
    assert "always on" in page.render(tenant=tenant | {"runtime": "running", "idle_after_s": 0}, events=[])
    assert "tenant-runtime-failure" not in html
    why = {"reason": "environment", "detail": "<secret unreadable>", "at": "2026-12-05T00:00:03+00:00"}
    failed = page.render(tenant=tenant | {"runtime": "failed", "runtime_failure": why}, events=[])
    assert 'id="tenant-runtime-failure">environment: &lt;secret unreadable&gt;</span>' in failed


# --- changing it later: PUT /v1/tenants/{name}/idle-after ------------------------------------


@pytest.mark.parametrize("bad", [-1, 31_536_001, "60", 1.5, True, [60], {"s": 60}])
async def test_a_bad_new_idle_period_is_a_422_naming_it_and_changes_nothing(client, db, published, bad):
    resp = await client.put("/v1/tenants/acme/idle-after", json={"idle_after_s": bad})
    assert resp.status_code == 422, resp.text
    assert resp.json()["detail"].startswith("idle_after_s: "), resp.json()
    assert db.data_writes() == [] and published == []


@pytest.mark.parametrize(("body", "says"), [({}, "idle_after_s: is required"),
                                           ({"idle_after_s": 0, "colour": "red"}, "colour: unknown key")])
async def test_an_incomplete_or_unknown_body_is_a_422_and_changes_nothing(client, db, published, body, says):
    resp = await client.put("/v1/tenants/acme/idle-after", json=body)
    assert resp.status_code == 422 and says in resp.json()["detail"], resp.text
    assert db.data_writes() == [] and published == []


@pytest.mark.parametrize("idle", [0, 60, None])
async def test_an_unknown_tenant_is_a_404_and_nothing_is_written(client, db, published, idle):
    resp = await client.put("/v1/tenants/nosuch/idle-after", json={"idle_after_s": idle})
    assert resp.status_code == 404 and "no tenant named 'nosuch'" in resp.json()["detail"], resp.text
    assert [w for w in db.data_writes() if not w.startswith("SELECT pg_advisory_xact_lock")] == []  # the lock only
    assert published == []
    audited = [w for w in db.writes if w.startswith("INSERT INTO audit_log")]
    assert audited, "the refusal is audited"


def test_the_change_is_audited_with_its_value():
    from services.api.audit import classify, summarize

    assert classify("PUT", "/v1/tenants/acme/idle-after") == ("tenant.idle_after", "acme")
    assert summarize(b'{"idle_after_s": 0}') == {"idle_after_s": 0}
    assert summarize(b'{"idle_after_s": null}') == {"idle_after_s": None}
