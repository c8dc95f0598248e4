"""Router-config against a real Caddy, PostgreSQL and moto (an ephemeral platform whose own
router-config and runtime agent are stopped, so this test is the only writer and serves
the tenant's registered port with an echo server of its own)."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import asyncpg
import httpx
import pytest

from contracts.envelope import Envelope
from contracts.events_v1 import DomainChangeRequested, RouteConfigured, RouteRemoved, TenantDeletionRequested, \
    TenantProvisioned
from contracts.tenant import tenant_names
from core.aws import aws_client
from hostplane.doctor import find_orphans
from hostplane.local.edge import CATCH_ALL_ID, base_config
from hostplane.local.ephemeral import start_platform, stop_platform
from reloader import desired
from services.router_config.handlers import on_domain_change_requested, on_tenant_deletion_requested, \
    on_tenant_provisioned, resync
from services.resources.wiring import resources
from services.router_config.service import open_router

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]
TENANT = "route-a"
DIGEST = "ab" * 32


def _stop_components(home, names) -> None:
    from core import process
    from core.state import load_state, save_state

    state = load_state(home)
    for name in names:
        comp = state.components.pop(name, None)
        if comp is not None:
            process.stop(comp.pid)
    save_state(home, state)


class Echo(BaseHTTPRequestHandler):
    """Answers every request with the tenant header and path it received."""

    def do_GET(self):  # noqa: N802
        body = json.dumps({"tenant": self.headers.get_all("X-Tenant-Id"), "path": self.path,
                           "served_by": self.server.name}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def echo_server(port: int, name: str) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", port), Echo)
    server.name = name
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    running = start_platform(tmp_path_factory.mktemp("router-platform"), "moto")
    _stop_components(running.settings.home_dir, ("router-config", "runtime-agent"))
    try:
        yield running
    finally:
        stop_platform(running)


def provisioned(tenant: str, domain: str | None = None) -> Envelope:
    n = tenant_names(tenant)
    return Envelope.new(TenantProvisioned(
        database=n.database, db_role=n.db_role, cache_user=n.cache_user, cache_prefix=n.cache_prefix,
        bucket=n.bucket, secret_name=n.secret, runtime_service=n.runtime_service, spec_ref="spec:sha256:" + DIGEST,
        spec_sha256=DIGEST, custom_domain=domain), tenant_id=tenant, producer="provisioner")


async def live_routes(deps) -> list[dict]:
    return await deps.edge.routes() or []


def edge_get(platform, host: str, path: str = "/", **kw) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{platform.settings.edge_port}{path}", headers={"Host": host, **kw},
                     timeout=5)


def raw_get(platform, host: str, path: str) -> tuple[int, bytes]:
    """GET with the path sent exactly as written (httpx would remove dot segments)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", platform.settings.edge_port, timeout=5)
    try:
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


async def test_routes_converge_serve_the_tenant_survive_an_empty_caddy_and_go_away(platform):
    settings = platform.settings
    conn = await asyncpg.connect(platform.conn.control_dsn)
    await desired.ensure_schema(conn)
    ports = range(settings.runtime_port_base, settings.runtime_port_base + settings.runtime_port_count)
    port = await desired.register_service(conn, TENANT, None, ports=ports)
    echo = echo_server(port, TENANT)
    deps = await open_router(settings, platform.conn.control_dsn, resync_every=None)
    names = tenant_names(TENANT)
    try:
        # handler twice: one route, one Caddy write
        first = await on_tenant_provisioned(provisioned(TENANT), deps)
        writes = deps.edge.writes
        again = await on_tenant_provisioned(provisioned(TENANT), deps)
        assert deps.edge.writes == writes == 1, "the second delivery must not write to Caddy"
        assert first == again == [RouteConfigured(hosts=[names.host], route_id=names.route_id,
                                                  upstream=f"127.0.0.1:{port}")]
        ids = [r.get("@id") for r in await live_routes(deps)]
        assert ids == [names.route_id, CATCH_ALL_ID]

        # the tenant's host reaches its upstream with its own tenant header, whatever the client sent
        resp = await asyncio.to_thread(edge_get, platform, names.host, "/hello?x=1", **{"X-Tenant-Id": "other"})
        assert resp.status_code == 200 and resp.json() == {"tenant": [TENANT], "path": "/hello?x=1",
                                                           "served_by": TENANT}
        assert (await asyncio.to_thread(edge_get, platform, "nobody.localhost")).status_code == 404

        # /static/* comes from the tenant's bucket; read-only, no climbing out, query dropped
        async with aws_client("s3", settings) as s3:
            await s3.create_bucket(Bucket=names.bucket)
            await s3.put_object(Bucket=names.bucket, Key="css/site.css", Body=b"body{color:red}")
        resp = await asyncio.to_thread(edge_get, platform, names.host, "/static/css/site.css")
        assert resp.status_code == 200 and resp.content == b"body{color:red}"
        resp = await asyncio.to_thread(edge_get, platform, names.host, "/static/css/site.css?list-type=2")
        assert resp.status_code == 200 and resp.content == b"body{color:red}"
        assert (await asyncio.to_thread(edge_get, platform, names.host, "/static/missing.css")).status_code == 404
        # an escaped climb out of /static/ never reaches the bucket store (400, or the app)
        climb = await asyncio.to_thread(edge_get, platform, names.host, "/static/..%2F..%2Fother/x")
        assert climb.status_code == 400 or climb.json()["served_by"] == TENANT
        put = await asyncio.to_thread(httpx.put, f"http://127.0.0.1:{settings.edge_port}/static/evil.css",
                                      headers={"Host": names.host}, content=b"x")
        assert put.status_code == 405

        # a custom domain is added, then removed
        change = Envelope.new(DomainChangeRequested(custom_domain="shop.example.com"), tenant_id=TENANT,
                              producer="api")
        out = await on_domain_change_requested(change, deps)
        assert out[0].hosts == [names.host, "shop.example.com"]
        writes = deps.edge.writes
        assert await on_domain_change_requested(change, deps) == out and deps.edge.writes == writes, "twice: no write"
        assert (await asyncio.to_thread(edge_get, platform, "shop.example.com")).json()["tenant"] == [TENANT]
        # a redelivered TenantProvisioned (domain-less) keeps the newer domain
        await on_tenant_provisioned(provisioned(TENANT), deps)
        assert (await asyncio.to_thread(edge_get, platform, "shop.example.com")).status_code == 200
        clear = Envelope.new(DomainChangeRequested(custom_domain=None), tenant_id=TENANT, producer="api")
        assert (await on_domain_change_requested(clear, deps))[0].hosts == [names.host]
        assert (await asyncio.to_thread(edge_get, platform, "shop.example.com")).status_code == 404

        # Caddy restarted from its base config (routes lost): the re-sync restores them
        base = base_config(platform.conn.caddy_admin_url, settings.host, settings.edge_port)
        (await deps.edge.client.post("/load", json=base)).raise_for_status()
        assert (await asyncio.to_thread(edge_get, platform, names.host)).status_code == 404
        restarted = await open_router(settings, platform.conn.control_dsn, resync_every=None)  # re-syncs on start
        await restarted.aclose()
        assert (await asyncio.to_thread(edge_get, platform, names.host)).json()["tenant"] == [TENANT]
        (await deps.edge.client.post("/load", json=base)).raise_for_status()
        assert await resync(deps) is True
        assert (await asyncio.to_thread(edge_get, platform, names.host)).json()["tenant"] == [TENANT]
        assert await resync(deps) is False, "no drift, no write"
        # Caddy holding no edge server at all: the re-sync recreates it
        (await deps.edge.client.post("/load", json={"admin": base["admin"]})).raise_for_status()
        assert await resync(deps) is True
        assert (await asyncio.to_thread(edge_get, platform, names.host)).json()["tenant"] == [TENANT]

        # deletion: route first, twice is harmless, a late older TenantProvisioned does not resurrect it
        late = provisioned(TENANT)
        deletion = Envelope.new(TenantDeletionRequested(), tenant_id=TENANT, producer="api")
        assert await on_tenant_deletion_requested(deletion, deps) == [
            RouteRemoved(route_id=names.route_id, hosts=[names.host])]
        writes = deps.edge.writes
        await on_tenant_deletion_requested(deletion, deps)
        assert deps.edge.writes == writes
        assert [r.get("@id") for r in await live_routes(deps)] == [CATCH_ALL_ID]
        assert (await asyncio.to_thread(edge_get, platform, names.host)).status_code == 404
        assert await on_tenant_provisioned(late, deps) == []
        older = late.model_copy(update={"occurred_at": deletion.occurred_at - timedelta(seconds=5)})
        assert await on_tenant_provisioned(older, deps) == []
        assert names.route_id not in [r.get("@id") for r in await live_routes(deps)]
        # a re-created tenant (newer events) is routed again
        assert (await on_tenant_provisioned(provisioned(TENANT), deps))[0].route_id == names.route_id

        # the tenant is not live for the provisioner: its route and its desired route are orphans
        async with resources(settings) as res:
            found = {(o.kind, o.name) for o in await find_orphans(res)}
        assert {("route", names.route_id), ("route_row", names.route_id)} <= found
    finally:
        echo.shutdown()
        await deps.aclose()
        await conn.close()


VICTIM = "route-v"


async def test_resync_leaves_exactly_the_desired_routes_whatever_was_added_or_changed(platform):
    """What someone with the admin API could do (a route without @id at index 0 for the
    victim's host, the victim's route patched, an extra tenant-like route, the catch-all
    rewritten, the order shuffled) is all undone by one re-sync, and /static/ never lists
    the bucket."""
    settings = platform.settings
    conn = await asyncpg.connect(platform.conn.control_dsn)
    await desired.ensure_schema(conn)
    ports = range(settings.runtime_port_base, settings.runtime_port_base + settings.runtime_port_count)
    port = await desired.register_service(conn, VICTIM, None, ports=ports)
    thief_port = await desired.register_service(conn, "route-thief", None, ports=ports)
    victim, thief = echo_server(port, VICTIM), echo_server(thief_port, "thief")
    deps = await open_router(settings, platform.conn.control_dsn, resync_every=None)
    names = tenant_names(VICTIM)
    try:
        await on_tenant_provisioned(provisioned(VICTIM), deps)
        assert await resync(deps) is False
        wanted = await live_routes(deps)
        mine = next(r for r in wanted if r.get("@id") == names.route_id)
        assert (await asyncio.to_thread(edge_get, platform, names.host)).json()["served_by"] == VICTIM

        steal = {"handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": f"127.0.0.1:{thief_port}"}]}]}
        anonymous = {"match": [{"host": [names.host]}], **steal, "terminal": True}
        edge = deps.edge.client
        attacks = [  # (method, path, body, the host it steals)
            ("PUT", "/config/apps/http/servers/edge/routes/0", anonymous, names.host),  # no @id, first
            ("PATCH", f"/id/{names.route_id}", {**mine, "handle": steal["handle"]}, names.host),  # the victim's
            ("PUT", "/config/apps/http/servers/edge/routes/0", {"@id": "tenant-zz-extra", **anonymous}, names.host),
            ("PATCH", f"/id/{CATCH_ALL_ID}", {"@id": CATCH_ALL_ID, **steal}, "nobody.localhost"),  # the catch-all
        ]
        for method, path, body, host in attacks:
            (await edge.request(method, path, json=body)).raise_for_status()
            assert (await asyncio.to_thread(edge_get, platform, host)).json()["served_by"] == "thief"
            assert await resync(deps) is True, (method, path)
            assert await live_routes(deps) == wanted, "exactly the desired list, in order"
            assert (await asyncio.to_thread(edge_get, platform, names.host)).json()["served_by"] == VICTIM
            assert (await asyncio.to_thread(edge_get, platform, "nobody.localhost")).status_code == 404
        # everything at once, and the catch-all moved to the front
        for method, path, body, _ in attacks:
            (await edge.request(method, path, json=body)).raise_for_status()
        shuffled = list(reversed(await live_routes(deps)))
        (await edge.patch("/config/apps/http/servers/edge/routes", json=shuffled)).raise_for_status()
        assert await resync(deps) is True
        assert await live_routes(deps) == wanted
        assert await resync(deps) is False, "no drift, no write"
        assert (await asyncio.to_thread(edge_get, platform, "nobody.localhost")).status_code == 404

        # /static/: an object is served, a "directory" never reaches the bucket store
        async with aws_client("s3", settings) as s3:
            await s3.create_bucket(Bucket=names.bucket)
            await s3.put_object(Bucket=names.bucket, Key="css/site.css", Body=b"body{}")
        assert (await asyncio.to_thread(edge_get, platform, names.host, "/static/css/site.css")).content == b"body{}"
        for listing in ("/static/", "/static/?list-type=2", "/static/css/", "/static/.", "/static/./",
                        "/static/css/.", "/static//", "/static/%2F", "/static/css%2F", "/static/%2e"):
            status, body = await asyncio.to_thread(raw_get, platform, names.host, listing)
            assert b"ListBucketResult" not in body and b"site.css" not in body, listing
            # refused at the edge, or (a path Caddy cleans out of /static/*, like /static/.) the app's
            assert status in (400, 404) or json.loads(body)["served_by"] == VICTIM, (listing, status)
    finally:
        victim.shutdown()
        thief.shutdown()
        await deps.aclose()
        await conn.close()
