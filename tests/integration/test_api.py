"""The API service as `hostplane up` runs it: real HTTP process, PostgreSQL, bus and queues.

One moto platform for the module. Refusals leave no row and no event; accepted requests
commit their event with the row; the projection follows events in any order (other
services' events are injected through the outbox or published straight to the bus, as
their producers do); no answer but `env` carries a secret. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from contracts import (
    BuildFailed,
    MigrationsApplied,
    ProvisioningFailed,
    ReleaseActivated,
    RouteConfigured,
    TenantChanged,
    TenantDeprovisioned,
    TenantProvisioned,
    TenantRequested,
)
from spec.load import MAX_SPEC_BYTES
from contracts.envelope import Envelope, Event
from contracts.events_v1 import RuntimeFailed
from contracts.tenant import tenant_names
from events.outbox import OutboxRelay, add_to_outbox, relay_sources
from events.publisher import Publisher
from events.topology import topology
from core.aws import aws_client
from hostplane.local.ephemeral import RunningPlatform, start_platform, stop_components, stop_platform
from tests.support.events import sample

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SPEC = (REPO / "examples" / "tasks.yaml").read_text()
SPEC_V2 = SPEC.replace("app: Tasks", "app: Tasks v2")
WAIT_S = 20.0


# The projection tests play these stages themselves by injecting their events.
PLAYED_BY_TESTS = ("router-config", "builder", "migrator")


@pytest.fixture(scope="module")
def platform(tmp_path_factory) -> RunningPlatform:
    running = start_platform(tmp_path_factory.mktemp("api"), "moto")
    stop_components(running.settings, PLAYED_BY_TESTS)
    try:
        yield running
    finally:
        stop_platform(running)


class Api:
    """An authorized client that remembers every answer (for the secret scan)."""

    def __init__(self, platform: RunningPlatform, pool: asyncpg.Pool) -> None:
        self.platform = platform
        self.pool = pool
        self.creds = json.loads((platform.settings.home_dir / "credentials.json").read_text())
        self.base = f"http://127.0.0.1:{platform.settings.api_port}"
        self.answers: list[tuple[str, str]] = []
        hooks = {"response": [self._remember]}
        self.http = httpx.AsyncClient(base_url=self.base, timeout=10, event_hooks=hooks,
                                      headers={"Authorization": f"Bearer {self.creds['api_token']}"})
        self.anon = httpx.AsyncClient(base_url=self.base, timeout=10, event_hooks=hooks)

    async def _remember(self, resp: httpx.Response) -> None:
        await resp.aread()
        self.answers.append((resp.request.url.path, resp.text))

    async def counts(self) -> dict[str, int]:
        tables = ("tenants", "tenant_requests", "tenant_status", "app_specs")
        counts = {t: await self.pool.fetchval(f"SELECT count(*) FROM {t}") for t in tables}
        counts["api events"] = await self.pool.fetchval("SELECT count(*) FROM outbox WHERE producer = 'api'")
        return counts

    async def show(self, name: str) -> dict[str, Any]:
        resp = await self.http.get(f"/v1/tenants/{name}")
        assert resp.status_code == 200, resp.text
        return resp.json()

    async def until(self, name: str, check: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + WAIT_S
        while True:
            tenant = await self.show(name)
            if check(tenant):
                return tenant
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{name} never reached {what}; last: {tenant['state']}/{tenant['stage']}")
            await asyncio.sleep(0.1)

    async def create(self, name: str, **extra: Any) -> dict[str, Any]:
        resp = await self.http.post("/v1/tenants", json={"name": name, "app": SPEC, **extra})
        assert resp.status_code == 202, resp.text
        return resp.json()

    async def inject(self, name: str, correlation: str, *events: Event, producer: str) -> None:
        """Commit events to the outbox as their producing service would; a relay publishes them."""
        envs = [Envelope.new(e, tenant_id=name, producer=producer, correlation_id=uuid.UUID(correlation))
                for e in events]
        async with self.pool.acquire() as conn, conn.transaction():
            await add_to_outbox(conn, envs)


@pytest.fixture(scope="module")
async def api(platform) -> AsyncIterator[Api]:
    pool = await asyncpg.create_pool(platform.conn.control_dsn, min_size=1, max_size=5)
    client = Api(platform, pool)
    # The tests play these services, so their outbox relays too (each relay publishes only
    # its own service's source, events.outbox.relay_sources).
    settings = platform.settings
    played = tuple(p for s in PLAYED_BY_TESTS for p in relay_sources(s))
    relay = OutboxRelay(pool, Publisher(settings, topology(settings.name_prefix).bus_name), sources=played,
                        poll_interval_s=0.2)
    relaying = asyncio.create_task(relay.run())
    try:
        yield client
    finally:
        relay.stop()
        await asyncio.wait_for(relaying, 10)
        await client.http.aclose()
        await client.anon.aclose()
        await pool.close()


@pytest.fixture(scope="module")
async def taken(api) -> dict[str, Any]:
    """A tenant that exists (so names and domains can collide with it)."""
    return await api.create("taken", domain="taken.example.com")


def ev(model: type[Event], **update: Any) -> Event:
    return sample(model).model_copy(update=update)


# --- the process -------------------------------------------------------------------------


async def test_health_and_openapi_answer_without_a_token(api, platform):
    health = await api.anon.get("/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok", "database": True}
    doc = (await api.anon.get("/openapi.json")).json()
    assert {"/v1/tenants", "/v1/tenants/{name}", "/v1/tenants/{name}/app", "/v1/tenants/{name}/events",
            "/v1/tenants/{name}/replay", "/v1/tenants/{name}/env"} <= set(doc["paths"])
    assert "HTTPBearer" in doc["components"]["securitySchemes"]
    state = json.loads((platform.settings.home_dir / "state.json").read_text())
    assert state["api_url"] == api.base and state["components"]["api"]["port"] == platform.settings.api_port


# --- refusals -----------------------------------------------------------------------------

BIG_TEXT = "app: T\nentities: {t: {fields: {a: {type: string}}}}\n#" + "x" * MAX_SPEC_BYTES
BIG_OBJECT = {"app": "T", "entities": {
    f"e{j}": {"fields": {f"f{i}": {"type": "text", "label": "z" * 190} for i in range(100)}} for j in range(16)}}
BOMB = 'a: &a ["lol","lol"]\nb: &b [*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b]\n'


def create(name: Any = "fresh", app: Any = SPEC, **extra: Any) -> dict[str, Any]:
    return {"json": {"name": name, "app": app, **extra}}


BAD = [
    # (id, method, path, request kwargs, status, fragment of the message)
    ("upper", "POST", "/v1/tenants", create("Acme"), 422, "name: tenant id 'Acme' must be 2-31 characters"),
    ("short", "POST", "/v1/tenants", create("a"), 422, "must be 2-31 characters"),
    ("long", "POST", "/v1/tenants", create("a" * 32), 422, "must be 2-31 characters"),
    ("digit-first", "POST", "/v1/tenants", create("1acme"), 422, "a lowercase letter, then"),
    ("underscore", "POST", "/v1/tenants", create("ac_me"), 422, "lowercase letters, digits or hyphens"),
    ("trailing-hyphen", "POST", "/v1/tenants", create("acme-"), 422, "must not end with a hyphen"),
    ("double-hyphen", "POST", "/v1/tenants", create("ac--me"), 422, "contain '--'"),
    ("reserved", "POST", "/v1/tenants", create("admin"), 422, "'admin' is reserved"),
    ("reserved-www", "POST", "/v1/tenants", create("www"), 422, "'www' is reserved"),
    ("name-number", "POST", "/v1/tenants", create(123), 422, "name: Input should be a valid string"),
    ("no-name", "POST", "/v1/tenants", {"json": {"app": SPEC}}, 422, "name: is required"),
    ("duplicate", "POST", "/v1/tenants", create("taken"), 409, "tenant 'taken' already exists"),
    ("no-app", "POST", "/v1/tenants", {"json": {"name": "fresh"}}, 422, "app: is required"),
    ("app-list", "POST", "/v1/tenants", create(app=[1]), 422, "send the spec as YAML or JSON text"),
    ("dangling-ref", "POST", "/v1/tenants", create(app=SPEC.replace("to: person", "to: persn")), 422,
     "entities.task.fields.owner.to: unknown entity 'persn'"),
    ("sql-keyword", "POST", "/v1/tenants", create(app=SPEC.replace("  person:", "  select:")), 422,
     "entities.select: 'select' is a reserved word"),
    ("field-type", "POST", "/v1/tenants", create(app=SPEC.replace("type: date", "type: dat")), 422,
     "entities.task.fields.due.type: unknown field type 'dat'"),
    ("yaml-bomb", "POST", "/v1/tenants", create(app=BOMB), 422, "YAML aliases (*name) are not accepted"),
    ("spec-json-object-invalid", "POST", "/v1/tenants", create(app={"app": "T", "entities": {}}), 422,
     "entities: has 0 entries; at least 1"),
    ("spec-text-too-big", "POST", "/v1/tenants", create(app=BIG_TEXT), 413, "the limit is 262144"),
    ("spec-object-too-big", "POST", "/v1/tenants", create(app=BIG_OBJECT), 413, "larger than 262144 bytes"),
    ("body-too-big", "POST", "/v1/tenants", {"content": b"{" + b" " * 600_000 + b"}",
                                             "headers": {"content-type": "application/json"}},
     413, "the limit is 524288 bytes"),
    ("malformed-json", "POST", "/v1/tenants", {"content": b'{"name": "x",', "headers": {"content-type":
                                                                                      "application/json"}},
     400, "the body is not valid JSON"),
    ("yaml-body", "POST", "/v1/tenants", {"content": b"name: x\n", "headers": {"content-type": "application/yaml"}},
     415, "send the body as JSON"),
    ("body-list", "POST", "/v1/tenants", {"json": [1, 2]}, 422, "the body must be a JSON object"),
    ("extra-key", "POST", "/v1/tenants", create(colour="red"), 422, "colour: unknown key"),
    ("edge-unknown", "POST", "/v1/tenants", create(edge="shared"), 422, "edge: Input should be"),
    ("edge-number", "POST", "/v1/tenants", create(edge=1), 422, "edge: Input should be"),
    ("domain-localhost", "POST", "/v1/tenants", create(domain="localhost"), 422, "not a fully qualified host name"),
    ("domain-reserved", "POST", "/v1/tenants", create(domain="shop.localhost"), 422, "reserved suffix"),
    ("domain-wildcard", "POST", "/v1/tenants", create(domain="*.example.com"), 422, "wildcards are not accepted"),
    ("domain-ip", "POST", "/v1/tenants", create(domain="10.0.0.1"), 422, "not a fully qualified host name"),
    ("domain-unicode", "POST", "/v1/tenants", create(domain="bücher.example"), 422, "punycode"),
    ("domain-taken", "POST", "/v1/tenants", create(domain="Taken.Example.com"), 409,
     "custom domain 'taken.example.com' already belongs to tenant 'taken'"),
    ("bad-actor", "POST", "/v1/tenants", {**create(), "headers": {"X-Hostplane-Actor": "x" * 200}}, 422,
     "X-Hostplane-Actor must be"),
    ("update-unknown", "PUT", "/v1/tenants/nosuch/app", {"json": {"app": SPEC}}, 404, "no tenant named 'nosuch'"),
    ("update-bad-spec", "PUT", "/v1/tenants/taken/app", {"json": {"app": "app: T\n"}}, 422, "entities: is required"),
    ("delete-unknown", "DELETE", "/v1/tenants/nosuch", {}, 404, "no tenant named 'nosuch'"),
    ("domain-change-unknown", "PUT", "/v1/tenants/nosuch/domain", {"json": {"domain": "a.example.com"}}, 404,
     "no tenant named 'nosuch'"),
    ("domain-change-reserved", "PUT", "/v1/tenants/taken/domain", {"json": {"domain": "x.localhost"}}, 422,
     "reserved suffix"),
    ("domain-change-missing", "PUT", "/v1/tenants/taken/domain", {"json": {}}, 422, "domain: is required"),
    ("domain-change-extra", "PUT", "/v1/tenants/taken/domain", {"json": {"domain": None, "x": 1}}, 422,
     "x: unknown key"),
    ("domain-change-busy", "PUT", "/v1/tenants/taken/domain", {"json": {"domain": "new.example.com"}}, 409,
     "is busy"),
    ("idle-unknown", "PUT", "/v1/tenants/nosuch/idle-after", {"json": {"idle_after_s": 60}}, 404,
     "no tenant named 'nosuch'"),
    ("idle-negative", "PUT", "/v1/tenants/taken/idle-after", {"json": {"idle_after_s": -1}}, 422, "idle_after_s: "),
    ("idle-too-long", "PUT", "/v1/tenants/taken/idle-after", {"json": {"idle_after_s": 31_536_001}}, 422,
     "idle_after_s: "),
    ("idle-text", "PUT", "/v1/tenants/taken/idle-after", {"json": {"idle_after_s": "60"}}, 422, "idle_after_s: "),
    ("idle-bool", "PUT", "/v1/tenants/taken/idle-after", {"json": {"idle_after_s": True}}, 422, "idle_after_s: "),
    ("idle-missing", "PUT", "/v1/tenants/taken/idle-after", {"json": {}}, 422, "idle_after_s: is required"),
    ("idle-extra", "PUT", "/v1/tenants/taken/idle-after", {"json": {"idle_after_s": 0, "x": 1}}, 422,
     "x: unknown key"),
    ("idle-busy", "PUT", "/v1/tenants/taken/idle-after", {"json": {"idle_after_s": 0}}, 409, "is busy"),
    ("events-unknown", "GET", "/v1/tenants/nosuch/events", {}, 404, "no tenant named 'nosuch'"),
    ("events-limit", "GET", "/v1/tenants/taken/events?limit=0", {}, 422, "limit"),
    ("replay-bad-since", "POST", "/v1/tenants/taken/replay", {"json": {"since": "yesterday"}}, 422, "since"),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
async def test_bad_input_is_refused_clearly_and_leaves_nothing(api, taken, case):
    _, method, path, kwargs, status, fragment = case
    before = await api.counts()
    resp = await api.http.request(method, path, **kwargs)
    assert resp.status_code == status, resp.text
    assert fragment in resp.json()["detail"], resp.json()
    assert await api.counts() == before


async def test_every_bad_spec_is_refused_at_the_api_naming_its_path_and_leaves_no_orphan(api, taken):
    """The spec loader's whole catalogue of bad specs (tests/unit/test_app_spec.py), through
    POST /v1/tenants: each a 4xx naming the spec path, no row or event, no orphan."""
    from hostplane.doctor import find_orphans
    from services.resources.wiring import open_resources
    from tests.support.specs import BAD_SPECS

    res = await open_resources(api.platform.settings)
    try:
        before = await api.counts()
        sent = [(src, expected) for src, expected in BAD_SPECS if not isinstance(src, bytes)]  # JSON carries text
        assert len(sent) >= 15
        for source, expected in sent:
            resp = await api.http.post("/v1/tenants", json={"name": "fresh", "app": source})
            assert resp.status_code in (413, 422), resp.text
            assert expected in json.dumps(resp.json(), ensure_ascii=False).replace('\\"', '"'), (expected, resp.text)
        ten_mb = await api.http.post("/v1/tenants", content=b'{"name": "fresh", "app": "' + b"x" * 10_000_000 + b'"}',
                                     headers={"content-type": "application/json"})
        assert ten_mb.status_code == 413 and "the limit is" in ten_mb.json()["detail"]
        assert await api.counts() == before
        assert await find_orphans(res) == [], "a refusal left something behind"
    finally:
        await res.aclose()


async def test_a_streamed_oversize_body_is_refused(api, taken):
    async def chunks():
        for _ in range(20):
            yield b" " * 50_000

    before = await api.counts()
    resp = await api.http.post("/v1/tenants", content=chunks(), headers={"content-type": "application/json"})
    assert resp.status_code == 413 and "more than" in resp.json()["detail"]
    assert await api.counts() == before


ROUTES = [("POST", "/v1/tenants", {"json": {"name": "sneaky", "app": SPEC}}), ("GET", "/v1/tenants", {}),
          ("GET", "/v1/tenants/taken", {}), ("PUT", "/v1/tenants/taken/app", {"json": {"app": SPEC_V2}}),
          ("DELETE", "/v1/tenants/taken", {}), ("GET", "/v1/tenants/taken/events", {}),
          ("POST", "/v1/tenants/taken/replay", {}), ("GET", "/v1/tenants/taken/env", {}),
          ("PUT", "/v1/tenants/taken/domain", {"json": {"domain": None}})]


@pytest.mark.parametrize("token", [None, "wrong-token-of-the-right-length-000000000"], ids=["none", "wrong"])
async def test_every_route_needs_the_token_and_changes_nothing_without(api, taken, token):
    before = await api.counts()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    for method, path, kwargs in ROUTES:
        resp = await api.anon.request(method, path, headers=headers, **kwargs)
        assert resp.status_code == 401, (method, path, resp.text)
    assert await api.counts() == before
    assert (await api.show("taken"))["deleted_at"] is None


async def test_concurrent_creates_of_one_name_or_domain_accept_exactly_one(api):
    before = await api.counts()
    same_name = await asyncio.gather(*(api.http.post("/v1/tenants", json={"name": "racer", "app": SPEC})
                                       for _ in range(6)))
    assert sorted(r.status_code for r in same_name) == [202] + [409] * 5
    same_domain = await asyncio.gather(*(api.http.post("/v1/tenants", json={
        "name": f"racer{i}", "app": SPEC, "domain": "race.example.com"}) for i in range(6)))
    assert sorted(r.status_code for r in same_domain) == [202] + [409] * 5
    after = await api.counts()
    assert after["tenants"] == before["tenants"] + 2 and after["api events"] == before["api events"] + 2


# --- accepted requests and the projection ------------------------------------------------------


async def test_create_commits_the_tenant_with_its_event(api):
    answer = await api.create("orders", domain="Orders.Example.com", edge="dedicated")
    corr = answer["request"]["correlation_id"]
    assert answer["tenant"]["state"] == "requested" and answer["tenant"]["custom_domain"] == "orders.example.com"
    assert answer["tenant"]["edge"] == "dedicated"
    row = await api.pool.fetchrow("SELECT * FROM outbox WHERE tenant_id = 'orders' AND event_type = 'TenantRequested'")
    assert str(row["correlation_id"]) == corr and row["producer"] == "api"
    detail = json.loads(row["detail"])
    assert detail["data"]["spec_ref"] == f"spec:sha256:{answer['tenant']['spec_sha256']}"
    assert detail["data"]["custom_domain"] == "orders.example.com" and detail["data"]["edge"] == "dedicated"
    assert detail["schema_version"] == TenantRequested.schema_version == "1.3"
    body = await api.pool.fetchval("SELECT body FROM app_specs WHERE sha256 = $1", answer["tenant"]["spec_sha256"])
    assert json.loads(body)["app"] == "Tasks"
    shown = await api.until("orders", lambda t: t["state"] != "requested", "the bus")
    assert shown["state"] == "provisioning" and shown["url"] == f"http://orders.localhost:{api.platform.settings.edge_port}/"
    # The relay stamps published_at after PutEvents returns, so the event can come back
    # through the bus (state provisioning) a moment before the log lists it.
    deadline = asyncio.get_running_loop().time() + 5
    while not (logged := (await api.http.get("/v1/tenants/orders/events")).json()["events"]):
        assert asyncio.get_running_loop().time() < deadline, "TenantRequested never showed in the event log"
        await asyncio.sleep(0.05)
    assert logged[0]["event_type"] == "TenantRequested" and logged[0]["correlation_id"] == corr
    listed = (await api.http.get("/v1/tenants")).json()["tenants"]
    assert "orders" in [t["name"] for t in listed]


async def test_the_projection_follows_events_out_of_order_and_twice(api):
    corr = (await api.create("flow"))["request"]["correlation_id"]
    # The builder and migrator answer before the route exists: provisioned is implied, route still missing.
    await api.inject("flow", corr, ev(TenantChanged, version=1), producer="builder")
    await api.inject("flow", corr, ev(MigrationsApplied, version=1), producer="migrator")
    t = await api.until("flow", lambda t: t["progress"]["migrated_version"] == 1, "migrated")
    assert (t["state"], t["stage"], t["waiting_for"]) == ("provisioning", "route", "router-config")
    await api.inject("flow", corr, ev(RouteConfigured), producer="router-config")
    t = await api.until("flow", lambda t: t["progress"]["routed"], "routed")
    assert (t["state"], t["stage"], t["waiting_for"]) == ("migrating", "release", "reloader")

    # The reloader publishes straight to the bus (no outbox), and the bus may deliver twice.
    activated = Envelope.new(ev(ReleaseActivated, version=1), tenant_id="flow", producer="reloader",
                             correlation_id=uuid.UUID(corr))
    settings = api.platform.settings
    async with Publisher(settings, topology(settings.name_prefix).bus_name) as pub:
        await pub.publish([activated])
        await pub.publish([activated])
    t = await api.until("flow", lambda t: t["state"] == "ready", "ready")
    assert t["version"] == 1 and t["error"] is None and t["request"]["settled"]
    logged = [e for e in (await api.http.get("/v1/tenants/flow/events")).json()["events"]
              if e["event_type"] == "ReleaseActivated"]
    assert [e["event_id"] for e in logged] == [str(activated.event_id)], "recorded once in the event log"

    # A late failure of a stage that already succeeded changes nothing.
    await api.inject("flow", corr, ev(ProvisioningFailed), producer="provisioner")
    await api.until("flow", lambda t: t["last_error"] is not None, "the late failure seen")
    assert (await api.show("flow"))["state"] == "ready"


async def test_update_then_build_failure_then_delete(api):
    corr = (await api.create("shop"))["request"]["correlation_id"]
    await api.inject("shop", corr, ev(TenantProvisioned), producer="provisioner")
    await api.until("shop", lambda t: t["progress"]["provisioned"], "provisioned")

    same = await api.http.put("/v1/tenants/shop/app", json={"app": SPEC})
    assert same.status_code == 200 and same.json()["changed"] is False
    updated = await api.http.put("/v1/tenants/shop/app", json={"app": SPEC_V2, "allow_destructive": True})
    assert updated.status_code == 202, updated.text
    upd = updated.json()["request"]
    assert (upd["kind"], upd["generation"]) == ("update", 2)
    row = await api.pool.fetchrow("SELECT detail FROM outbox WHERE correlation_id = $1 ORDER BY seq LIMIT 1",
                                  uuid.UUID(upd["correlation_id"]))
    assert json.loads(row["detail"])["event_type"] == "AppUpdateRequested"
    assert json.loads(row["detail"])["data"]["allow_destructive"] is True
    t = await api.show("shop")
    assert (t["state"], t["stage"]) == ("updating", "build")

    await api.inject("shop", upd["correlation_id"], ev(BuildFailed, stage="codegen", error="cannot build task"),
                     producer="builder")
    t = await api.until("shop", lambda t: t["state"] == "failed", "failed")
    assert t["error"]["stage"] == "building" and t["error"]["step"] == "codegen"
    assert t["error"]["message"] == "cannot build task"

    gone = await api.http.delete("/v1/tenants/shop")
    assert gone.status_code == 202 and gone.json()["tenant"]["state"] == "deleting"
    again = await api.http.delete("/v1/tenants/shop")
    assert again.status_code == 200 and again.json()["changed"] is False, "a deletion in progress is not repeated"
    dcorr = gone.json()["request"]["correlation_id"]
    await api.inject("shop", dcorr, ev(TenantDeprovisioned), producer="deprovisioner")
    t = await api.until("shop", lambda t: t["state"] == "deleted", "deleted")
    assert t["url"] is None
    await api.inject("shop", corr, ev(TenantProvisioned), producer="provisioner")
    await api.inject("shop", corr, ev(RouteConfigured), producer="router-config")
    await asyncio.sleep(1.0)
    assert (await api.show("shop"))["state"] == "deleted", "late events never resurrect a deleted tenant"
    assert "shop" not in [t["name"] for t in (await api.http.get("/v1/tenants")).json()["tenants"]]
    assert "shop" in [t["name"] for t in (await api.http.get("/v1/tenants?all=true")).json()["tenants"]]
    env = await api.http.get("/v1/tenants/shop/env")
    assert env.status_code == 404 and "was deleted" in env.json()["detail"]
    assert (await api.http.put("/v1/tenants/shop/app", json={"app": SPEC})).status_code == 409

    reborn = await api.create("shop")
    assert reborn["request"]["generation"] == 4 and reborn["tenant"]["state"] == "requested"


async def test_replay_requeues_the_tenants_events_without_moving_it(api):
    corr = (await api.create("echo"))["request"]["correlation_id"]
    await api.inject("echo", corr, ev(TenantProvisioned), producer="provisioner")
    await api.inject("echo", corr, ev(RouteConfigured), producer="router-config")
    t = await api.until("echo", lambda t: t["state"] == "building", "building")
    resp = await api.http.post("/v1/tenants/echo/replay", json={"type": "RouteConfigured"})
    assert resp.status_code == 202 and resp.json()["queued"] == 1
    replayed = await api.pool.fetchval(
        "SELECT count(*) FROM outbox WHERE tenant_id = 'echo' AND replay_id IS NOT NULL AND published_at IS NOT NULL")
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while not replayed and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)
        replayed = await api.pool.fetchval("SELECT count(*) FROM outbox WHERE tenant_id = 'echo' "
                                           "AND replay_id IS NOT NULL AND published_at IS NOT NULL")
    assert replayed == 1
    await asyncio.sleep(0.5)
    after = await api.show("echo")
    assert (after["state"], after["stage"]) == (t["state"], t["stage"])


async def test_env_is_the_only_answer_with_the_tenants_secret(api):
    corr = (await api.create("envy"))["request"]["correlation_id"]
    secret_name = tenant_names("envy", prefix=api.platform.settings.name_prefix).secret
    try:
        await api.until("envy", lambda t: t["progress"]["provisioned"], "provisioned by the provisioner")
    except AssertionError:  # no provisioner installed: stand in for it
        async with aws_client("secretsmanager", api.platform.settings) as sm:
            await sm.create_secret(Name=secret_name, SecretString=json.dumps(
                {"DATABASE_URL": "postgresql://t_envy:s3cr3t-pw-123@h:1/t_envy", "DB_PASSWORD": "s3cr3t-pw-123"}))
        await api.inject("envy", corr, ev(TenantProvisioned), producer="provisioner")
    resp = await api.http.get("/v1/tenants/envy/env")
    assert resp.status_code == 200 and resp.headers["cache-control"] == "no-store"
    env = resp.json()["env"]
    assert "DATABASE_URL" in env and "DB_PASSWORD" in env
    api.tenant_secrets = [v for k, v in env.items() if "PASSWORD" in k or k in ("DATABASE_URL", "REDIS_URL")]


async def test_spec_names_refuse_every_reserved_keyword_of_the_real_postgres(api):
    from contracts.app_spec import SQL_KEYWORDS

    reserved = {r["word"] for r in await api.pool.fetch("SELECT word FROM pg_get_keywords() WHERE catcode IN ('R', 'T')")}
    assert reserved and reserved <= SQL_KEYWORDS, sorted(reserved - SQL_KEYWORDS)


async def test_no_secret_in_any_answer_but_env(api):
    """Runs last: every answer this module received, and the API's log, scanned for every secret known."""
    await api.http.get("/v1/tenants?all=true")
    for name in ("taken", "orders", "flow", "shop", "echo", "envy", "racer"):
        await api.http.get(f"/v1/tenants/{name}")
        await api.http.get(f"/v1/tenants/{name}/events")
    secrets = [api.creds[k] for k in ("api_token", "postgres_password", "valkey_password")]
    secrets += getattr(api, "tenant_secrets", [])
    assert len(api.answers) > 60
    for path, text in api.answers:
        if path.endswith("/env"):
            continue
        for secret in secrets:
            assert secret not in text, f"a secret leaked in the answer to {path}"
    log = (api.platform.settings.home_dir / "logs" / "api.log").read_text()
    assert "http.request" in log and "status.changed" in log
    assert not [s for s in secrets if s in log], "a secret leaked into the API's log"



async def test_an_idle_change_goes_to_the_provisioner_and_a_replayed_older_one_changes_nothing(api):
    corr = (await api.create("idler", idle_after_s=300))["request"]["correlation_id"]
    await api.until("idler", lambda t: t["progress"]["provisioned"], "provisioned by the provisioner")
    await api.inject("idler", corr, ev(RouteConfigured), producer="router-config")
    await api.inject("idler", corr, ev(TenantChanged, version=1), producer="builder")
    await api.inject("idler", corr, ev(MigrationsApplied, version=1), producer="migrator")
    settings = api.platform.settings
    async with Publisher(settings, topology(settings.name_prefix).bus_name) as pub:
        await pub.publish([Envelope.new(ev(ReleaseActivated, version=1), tenant_id="idler", producer="reloader",
                                        correlation_id=uuid.UUID(corr))])
    await api.until("idler", lambda t: t["state"] == "ready", "ready")
    registered = "SELECT idle_after_s FROM runtime_services WHERE tenant_id = 'idler'"
    assert await api.pool.fetchval(registered) == 300

    on = await api.http.put("/v1/tenants/idler/idle-after", json={"idle_after_s": 0})
    assert on.status_code == 202, on.text
    req = on.json()["request"]
    assert (req["kind"], req["generation"]) == ("idle", 2)
    t = on.json()["tenant"]
    assert (t["state"], t["stage"], t["waiting_for"], t["idle_after_s"]) == ("updating", "settings", "provisioner", 0)
    # the request's own row, the first of its correlation: the provisioner's IdleAfterChanged may follow it
    detail = json.loads(await api.pool.fetchval(
        "SELECT detail FROM outbox WHERE correlation_id = $1 ORDER BY seq LIMIT 1", uuid.UUID(req["correlation_id"])))
    assert (detail["event_type"], detail["data"]["idle_after_s"]) == ("IdleAfterChangeRequested", 0)
    t = await api.until("idler", lambda t: t["state"] == "ready", "ready after the idle change")
    assert t["request"]["generation"] == 2 and t["version"] == 1 and await api.pool.fetchval(registered) == 0
    same = await api.http.put("/v1/tenants/idler/idle-after", json={"idle_after_s": 0})
    assert same.status_code == 200 and same.json()["changed"] is False

    default = await api.http.put("/v1/tenants/idler/idle-after", json={"idle_after_s": None})
    assert default.status_code == 202 and default.json()["tenant"]["idle_after_s"] is None, default.text
    await api.until("idler", lambda t: t["state"] == "ready" and t["request"]["generation"] == 3, "ready again")
    assert await api.pool.fetchval(registered) is None

    # Replaying both commands: the older (always-on) is superseded, the newer converges.
    replay = await api.http.post("/v1/tenants/idler/replay", json={"type": "IdleAfterChangeRequested"})
    assert replay.status_code == 202 and replay.json()["queued"] == 2
    handled = ("SELECT count(*) FROM inbox i JOIN outbox o ON i.dedup_key = o.event_id || ':' || o.replay_id "
               "WHERE i.consumer = 'provisioner' AND o.tenant_id = 'idler'")
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while await api.pool.fetchval(handled) < 2 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.2)
    assert await api.pool.fetchval(handled) == 2
    assert await api.pool.fetchval(registered) is None, "the replayed always-on did not override the newer choice"
    t = await api.show("idler")
    assert (t["state"], t["request"]["generation"], t["idle_after_s"]) == ("ready", 3, None)


async def test_a_failed_runtime_shows_why_until_it_serves_again(api):
    """The host's RuntimeFailed, through the bus and the API's consumer into PostgreSQL: the
    view says failed and why; the next ReleaseActivated says running and drops the why."""
    corr = (await api.create("failing"))["request"]["correlation_id"]
    await api.until("failing", lambda t: t["progress"]["provisioned"], "provisioned by the provisioner")
    for data, producer in ((ev(RouteConfigured), "router-config"), (ev(TenantChanged, version=1), "builder"),
                           (ev(MigrationsApplied, version=1), "migrator")):
        await api.inject("failing", corr, data, producer=producer)
    settings = api.platform.settings

    async def host_says(data: Event) -> None:
        async with Publisher(settings, topology(settings.name_prefix).bus_name) as pub:
            await pub.publish([Envelope.new(data, tenant_id="failing", producer="reloader",
                                            correlation_id=uuid.UUID(corr))])

    await host_says(ev(ReleaseActivated, version=1))
    await api.until("failing", lambda t: t["runtime"] == "running", "running")
    await host_says(RuntimeFailed(reason="port_taken", detail="127.0.0.1:10007 is held by another program"))
    t = await api.until("failing", lambda t: t["runtime"] == "failed", "failed, as the host said")
    assert t["runtime_failure"]["reason"] == "port_taken"
    assert t["runtime_failure"]["detail"] == "127.0.0.1:10007 is held by another program" and t["runtime_failure"]["at"]
    assert t["state"] == "ready" and t["version"] == 1, "the tenant's own state is unchanged"
    await host_says(ev(ReleaseActivated, version=1))
    t = await api.until("failing", lambda t: t["runtime"] == "running", "running again")
    assert t["runtime_failure"] is None
