"""Router-config and the edge's routing by lookup against a real Caddy, route resolver,
PostgreSQL and moto (a platform of its own whose router-config and runtime agent are
stopped, so this test is the only writer and serves the tenant's registered port with an
echo server of its own)."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address

import asyncpg
import dns.asyncquery
import dns.message
import dns.rcode
import dns.rdatatype
import httpx
import psutil
import pytest

from contracts.envelope import Envelope
from contracts.events_v1 import DomainChangeRequested, RouteConfigured, RouteRemoved, TenantDeletionRequested, \
    TenantProvisioned
from contracts.tenant import tenant_names
from core.aws import aws_client
from hostplane.doctor import find_orphans
from hostplane.local.edge import admin_client
from hostplane.local.ephemeral import start_platform, stop_platform
from services.router_config.handlers import on_domain_change_requested, on_tenant_deletion_requested, \
    on_tenant_provisioned
from contracts.edge import REFRESH_S, app_name
from services.resources import registry
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
    protocol_version = "HTTP/1.1"  # keep-alive, as the bystander clients expect

    """Answers every request with the tenant header and path it received."""

    def do_GET(self):  # noqa: N802
        body = json.dumps({"tenant": self.headers.get_all("X-Tenant-Id"), "path": self.path,
                           "host": self.headers.get("Host"), "served_by": self.server.name}).encode()
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


async def caddy_config(platform) -> dict:
    async with admin_client(platform.conn.caddy_admin_url, timeout=5) as client:
        return (await client.get("/config/")).json()


def edge_get(platform, host: str, path: str = "/", **kw) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{platform.settings.edge_port}{path}", headers={"Host": host, **kw},
                     timeout=5)


async def eventually(check, seconds: float = REFRESH_S + 1.5):
    """What the edge serves after a route change: within Caddy's lookup cache (REFRESH_S)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        result = await asyncio.to_thread(check)
        if result or asyncio.get_running_loop().time() > deadline:
            return result
        await asyncio.sleep(0.1)


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


async def register(platform, conn, tenant: str) -> int:
    return await registry.register_service(conn, tenant, None, ports=registry.port_range(platform.settings))


async def resolve(platform, name: str) -> dns.message.Message:
    query = dns.message.make_query(name, dns.rdatatype.SRV)
    return await dns.asyncquery.tcp(query, "127.0.0.1", port=platform.settings.resolver_port, timeout=3)


async def resolve_settled(platform, name: str, rcode: dns.rcode.Rcode, within: float = 2.0) -> dns.message.Message:
    """The answer once it has `rcode` (or after `within` s): the resolver rereads the table on
    router-config's NOTIFY, a moment after the write that the handler returns from."""
    deadline = asyncio.get_running_loop().time() + within
    while (answer := await resolve(platform, name)).rcode() != rcode:
        if asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.05)
    return answer


async def test_routes_are_rows_the_edge_looks_up_and_caddy_is_never_written(platform):
    settings = platform.settings
    conn = await asyncpg.connect(platform.conn.control_dsn)
    await registry.ensure_schema(conn)
    port = await register(platform, conn, TENANT)
    echo = echo_server(port, TENANT)
    deps = await open_router(settings, platform.conn.control_dsn)
    names = tenant_names(TENANT)
    fixed = await caddy_config(platform)
    try:
        # handler twice: one row, one event, the same both times
        first = await on_tenant_provisioned(provisioned(TENANT), deps)
        again = await on_tenant_provisioned(provisioned(TENANT), deps)
        assert first == again == [RouteConfigured(hosts=[names.host], route_id=names.route_id,
                                                  upstream=f"127.0.0.1:{port}")]

        # served once the resolver reread the table (an unanswered name is not cached), with
        # its own tenant header
        assert await eventually(lambda: edge_get(platform, names.host).status_code == 200)
        resp = await asyncio.to_thread(edge_get, platform, names.host, "/hello?x=1", **{"X-Tenant-Id": "other"})
        assert resp.status_code == 200 and resp.json() == {"tenant": [TENANT], "path": "/hello?x=1",
                                                           "host": names.host, "served_by": TENANT}
        for unknown in ("nobody.localhost", "a.route-a.localhost", "route-a.localhost.evil", "example.org"):
            resp = await asyncio.to_thread(edge_get, platform, unknown)
            assert resp.status_code == 404 and b"no tenant serves this host" in resp.content, unknown

        # /static/* comes from the tenant's bucket; read-only, no climbing out, query dropped
        async with aws_client("s3", settings) as s3:
            await s3.create_bucket(Bucket=names.bucket)
            await s3.put_object(Bucket=names.bucket, Key="css/site.css", Body=b"body{color:red}")
        resp = await asyncio.to_thread(edge_get, platform, names.host, "/static/css/site.css")
        assert resp.status_code == 200 and resp.content == b"body{color:red}"
        resp = await asyncio.to_thread(edge_get, platform, names.host, "/static/css/site.css?list-type=2")
        assert resp.status_code == 200 and resp.content == b"body{color:red}"
        assert (await asyncio.to_thread(edge_get, platform, names.host, "/static/missing.css")).status_code == 404
        climb = await asyncio.to_thread(edge_get, platform, names.host, "/static/..%2F..%2Fother/x")
        assert climb.status_code == 400 or climb.json()["served_by"] == TENANT
        put = await asyncio.to_thread(httpx.put, f"http://127.0.0.1:{settings.edge_port}/static/evil.css",
                                      headers={"Host": names.host}, content=b"x")
        assert put.status_code == 405
        for listing in ("/static/", "/static/?list-type=2", "/static/css/", "/static/.", "/static/./",
                        "/static/css/.", "/static//", "/static/%2F", "/static/css%2F", "/static/%2e"):
            status, body = await asyncio.to_thread(raw_get, platform, names.host, listing)
            assert b"ListBucketResult" not in body and b"site.css" not in body, listing
            assert status in (400, 404) or json.loads(body)["served_by"] == TENANT, (listing, status)

        # a custom domain: one more name for the same tenant (its app sees the domain as Host;
        # its static files come from the same bucket)
        change = Envelope.new(DomainChangeRequested(custom_domain="shop.example.com"), tenant_id=TENANT,
                              producer="api")
        out = await on_domain_change_requested(change, deps)
        assert out[0].hosts == [names.host, "shop.example.com"]
        assert await on_domain_change_requested(change, deps) == out
        assert await eventually(lambda: edge_get(platform, "shop.example.com").status_code == 200)
        resp = await asyncio.to_thread(edge_get, platform, "shop.example.com", **{"X-Tenant-Id": "other"})
        assert resp.json()["tenant"] == [TENANT] and resp.json()["host"] == "shop.example.com"
        resp = await asyncio.to_thread(edge_get, platform, "shop.example.com", "/static/css/site.css")
        assert resp.status_code == 200 and resp.content == b"body{color:red}"
        # a redelivered TenantProvisioned (domain-less) keeps the newer domain
        await on_tenant_provisioned(provisioned(TENANT), deps)
        assert (await asyncio.to_thread(edge_get, platform, "shop.example.com")).status_code == 200
        clear = Envelope.new(DomainChangeRequested(custom_domain=None), tenant_id=TENANT, producer="api")
        assert (await on_domain_change_requested(clear, deps))[0].hosts == [names.host]
        assert await eventually(lambda: edge_get(platform, "shop.example.com").status_code == 404)

        # deletion: the resolver stops answering at once, the edge within its cache; twice is
        # harmless; a late older TenantProvisioned does not resurrect it
        late = provisioned(TENANT)
        deletion = Envelope.new(TenantDeletionRequested(), tenant_id=TENANT, producer="api")
        assert await on_tenant_deletion_requested(deletion, deps) == [
            RouteRemoved(route_id=names.route_id, hosts=[names.host])]
        assert (await resolve_settled(platform, app_name(names.host), dns.rcode.NXDOMAIN)).rcode() == dns.rcode.NXDOMAIN
        await on_tenant_deletion_requested(deletion, deps)
        assert await eventually(lambda: edge_get(platform, names.host).status_code == 404)
        assert await on_tenant_provisioned(late, deps) == []
        older = late.model_copy(update={"occurred_at": deletion.occurred_at - timedelta(seconds=5)})
        assert await on_tenant_provisioned(older, deps) == []
        assert (await asyncio.to_thread(edge_get, platform, names.host)).status_code == 404
        # a re-created tenant (newer events) is routed again
        assert (await on_tenant_provisioned(provisioned(TENANT), deps))[0].route_id == names.route_id
        assert (await asyncio.to_thread(edge_get, platform, names.host)).json()["served_by"] == TENANT

        # the tenant is not live for the provisioner: its route is an orphan
        async with resources(settings) as res:
            found = {(o.kind, o.name) for o in await find_orphans(res)}
        assert ("route", names.route_id) in found
        assert await caddy_config(platform) == fixed, "no route change touches Caddy's configuration"
    finally:
        echo.shutdown()
        await deps.aclose()
        await conn.close()


async def test_the_resolver_answers_only_live_route_names(platform):
    conn = await asyncpg.connect(platform.conn.control_dsn)
    await registry.ensure_schema(conn)
    deps = await open_router(platform.settings, platform.conn.control_dsn)
    tenant = "route-dns"
    names = tenant_names(tenant)
    try:
        port = await register(platform, conn, tenant)
        await on_tenant_provisioned(provisioned(tenant, "dns.example.com"), deps)
        answer = await resolve_settled(platform, app_name(names.host), dns.rcode.NOERROR)
        assert answer.rcode() == dns.rcode.NOERROR
        assert [(r.port, r.target.to_text()) for r in answer.answer[0]] == [(port, f"{tenant}.runtime.hostplane.internal.")]
        assert (await resolve(platform, app_name("dns.example.com"))).answer
        for name in (app_name("nobody.localhost"), "route-dns.localhost", "hostplane.internal",
                     "example.org", app_name("route-dns.localhost") + ".example.org"):
            assert (await resolve(platform, name)).rcode() == dns.rcode.NXDOMAIN, name
        deletion = Envelope.new(TenantDeletionRequested(), tenant_id=tenant, producer="api")
        await on_tenant_deletion_requested(deletion, deps)
        for name in (app_name(names.host), app_name("dns.example.com")):
            assert (await resolve_settled(platform, name, dns.rcode.NXDOMAIN)).rcode() == dns.rcode.NXDOMAIN, name
        # it listens on loopback only
        listening = [c.laddr for c in psutil.net_connections("tcp")
                     if c.status == psutil.CONN_LISTEN and c.laddr.port == platform.settings.resolver_port]
        assert listening and all(ip_address(a.ip).is_loopback for a in listening), listening
    finally:
        await deps.aclose()
        await conn.close()


def keep_alive_client(platform, host: str, stop: threading.Event, outcome: dict) -> None:
    """One persistent connection, no retries: every failed request counts."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", platform.settings.edge_port, timeout=5)
    while not stop.is_set():
        try:
            conn.request("GET", "/", headers={"Host": host})
            resp = conn.getresponse()
            resp.read()
            outcome["ok" if resp.status == 200 else f"status {resp.status}"] += 1
        except Exception as exc:  # noqa: BLE001 - what a client without retries sees
            outcome[type(exc).__name__] += 1
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", platform.settings.edge_port, timeout=5)
    conn.close()


async def test_other_tenants_churn_without_resetting_a_bystanders_connections(platform):
    from collections import Counter

    conn = await asyncpg.connect(platform.conn.control_dsn)
    await registry.ensure_schema(conn)
    deps = await open_router(platform.settings, platform.conn.control_dsn)
    bystander = "route-by"
    echo = echo_server(await register(platform, conn, bystander), bystander)
    stop, outcomes = threading.Event(), [Counter(), Counter()]
    clients = [threading.Thread(target=keep_alive_client,
                                args=(platform, tenant_names(bystander).host, stop, outcome))
               for outcome in outcomes]
    try:
        await on_tenant_provisioned(provisioned(bystander), deps)
        # The resolver rereads the table on router-config's NOTIFY, a moment after the handler
        # returns: a first request before that is a 404 that says nothing about the churn.
        await resolve_settled(platform, app_name(tenant_names(bystander).host), dns.rcode.NOERROR)
        for client in clients:
            client.start()
        for i in range(6):  # others come and go while the bystander is read
            other = f"route-churn{i}"
            await register(platform, conn, other)
            await on_tenant_provisioned(provisioned(other, f"churn{i}.example.com"), deps)
            await asyncio.sleep(0.2)
            await on_tenant_deletion_requested(Envelope.new(TenantDeletionRequested(), tenant_id=other,
                                                            producer="api"), deps)
            await asyncio.sleep(0.2)
    finally:
        stop.set()
        for client in clients:
            client.join(10) if client.ident else None
        echo.shutdown()
        await deps.aclose()
        await conn.close()
    total = sum(outcomes, Counter())
    assert total["ok"] > 50 and set(total) == {"ok"}, dict(total)
