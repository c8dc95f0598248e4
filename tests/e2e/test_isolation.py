"""Two tenants through the CLI: each one's credentials work on its own database and cache
prefix and are refused on the other's; the edge sends each host to its own tenant only;
deleting one leaves no orphan and the other untouched.

Routing is proven at the layers that decide it, independent of whether an app is built
yet: the route resolver the edge asks gives `a`'s host `a`'s port in the runtime registry
(the port a's runtime serves on), never `b`'s, and an unknown host gets the edge's 404
(the header the edge sets and the lookup itself: tests/integration/test_router_config.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
import redis.asyncio as aredis
from redis.exceptions import NoPermissionError, ResponseError

from hostplane.local.ephemeral import RunningPlatform, platform_settings
from core.state import connection_info

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
EMULATOR = os.environ.get("HOSTPLANE_E2E_EMULATOR") or "moto"
SPEC = str(Path(__file__).resolve().parents[2] / "examples" / "tasks.yaml")
A, B = "acme", "bravo"


def run(env, *args, timeout=240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hostplane", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def ok_json(env, *args, timeout=240):
    done = run(env, *args, timeout=timeout)
    assert done.returncode == 0, f"hostplane {' '.join(args)}: {done.stderr[-2000:]}"
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    settings = platform_settings(tmp_path_factory.mktemp("isolation") / "home", EMULATOR)
    env = RunningPlatform(settings=settings, conn=None, emulator=EMULATOR).env()  # type: ignore[arg-type]
    up = run(env, "up")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield settings, env
    finally:
        run(env, "down", "--purge")


def other_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


async def db_works(dsn: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS isolation_probe (v text)")
        await conn.execute("INSERT INTO isolation_probe VALUES ('mine')")
        assert await conn.fetchval("SELECT count(*) FROM isolation_probe") >= 1
    finally:
        await conn.close()


async def db_refused(dsn: str) -> None:
    with pytest.raises(asyncpg.PostgresError) as refused:
        conn = await asyncpg.connect(dsn, timeout=10)
        await conn.close()
    assert "permission denied" in str(refused.value)


async def cache_checks(own: dict, other_prefix: str) -> None:
    r = aredis.Redis.from_url(own["REDIS_URL"], socket_timeout=5)
    try:
        await r.set(f"{own['CACHE_PREFIX']}probe", "mine")
        assert await r.get(f"{own['CACHE_PREFIX']}probe") == b"mine"
        for attempt in (lambda: r.get(f"{other_prefix}probe"), lambda: r.set(f"{other_prefix}probe", "x"),
                        lambda: r.keys("*"), lambda: r.flushall(), lambda: r.flushdb()):
            with pytest.raises((NoPermissionError, ResponseError)) as refused:
                await attempt()
            assert "NOPERM" in str(refused.value) or "permission" in str(refused.value).lower()
    finally:
        await r.aclose()


def resolved_port(settings, host: str) -> int | None:
    """The runtime port the edge's route resolver gives for `host` (None: not routed), asked
    the way Caddy asks it."""
    import dns.message
    import dns.query

    from contracts.edge import app_name

    reply = dns.query.tcp(dns.message.make_query(app_name(host), "SRV"), settings.host,
                          port=settings.resolver_port, timeout=3)
    return reply.answer[0][0].port if reply.answer else None


def resolves(settings, host: str, port: int | None, within: float = 2.0) -> bool:
    """Whether the resolver gives `port` for `host` (None: not routed) within `within` s: it
    rereads the routes table on router-config's NOTIFY, a moment after the write."""
    deadline = time.monotonic() + within
    while (found := resolved_port(settings, host)) != port and time.monotonic() < deadline:
        time.sleep(0.05)
    return found == port


async def registered_ports(settings) -> dict[str, int]:
    conn = await asyncpg.connect(connection_info(settings.home_dir).control_dsn)
    try:
        rows = await conn.fetch("SELECT tenant_id, app_port FROM runtime_services")
        return {r["tenant_id"]: r["app_port"] for r in rows}
    finally:
        await conn.close()


def test_two_tenants_are_isolated_and_deleting_one_leaves_the_other_working(platform):
    settings, env = platform
    for name in (A, B):
        shown = ok_json(env, "tenant", "create", name, "--app", SPEC, "--wait", "--until", "building",
                        "--timeout", "120", "--json")
        assert shown["progress"]["routed"], shown  # provisioned and routed; building may follow
    for name in (A, B):
        events = ok_json(env, "events", "list", "--tenant", name, "--json")
        assert "RouteConfigured" in [e["event_type"] for e in events]
    creds = {name: ok_json(env, "tenant", "env", name, "--json") for name in (A, B)}

    async def credentials_isolated() -> None:
        for me, other in ((A, B), (B, A)):
            await db_works(creds[me]["DATABASE_URL"])
            other_db = urlsplit(creds[other]["DATABASE_URL"]).path.lstrip("/")
            await db_refused(other_database(creds[me]["DATABASE_URL"], other_db))
            await cache_checks(creds[me], creds[other]["CACHE_PREFIX"])

    asyncio.run(credentials_isolated())

    # the edge: each host → its own runtime port; unknown host → 404
    ports = asyncio.run(registered_ports(settings))
    first = settings.runtime_port_base  # the platform's range reached the provisioner
    assert all(first <= ports[t] < first + settings.runtime_port_count for t in (A, B)), ports
    for me, other in ((A, B), (B, A)):
        assert resolves(settings, f"{me}.localhost", ports[me]) and ports[me] != ports[other]
    edge = f"http://127.0.0.1:{settings.edge_port}/"
    assert httpx.get(edge, headers={"Host": "nobody.localhost"}, timeout=5).status_code == 404

    # a custom domain for a, once its create settled (ready, or failed at a later stage)
    deadline = time.monotonic() + 300
    while not ok_json(env, "tenant", "show", A, "--json")["request"]["settled"]:
        assert time.monotonic() < deadline, "a's create never settled"
        time.sleep(1)
    changed = ok_json(env, "tenant", "update", A, "--domain", "Shop.Example.com", "--wait", "--timeout", "60",
                      "--json")
    assert (changed["state"], changed["custom_domain"], changed["request"]["kind"]) == (
        "ready", "shop.example.com", "domain")
    assert resolves(settings, "shop.example.com", ports[A])
    taken = run(env, "tenant", "update", B, "--domain", "shop.example.com")
    assert taken.returncode == 1 and "already belongs to tenant 'acme'" in taken.stderr
    removed = ok_json(env, "tenant", "update", A, "--no-domain", "--wait", "--timeout", "60", "--json")
    assert removed["state"] == "ready" and removed["custom_domain"] is None
    assert resolves(settings, "shop.example.com", None)
    time.sleep(2)  # what Caddy looked up before is kept for at most contracts.edge.REFRESH_S
    assert httpx.get(edge, headers={"Host": "shop.example.com"}, timeout=5).status_code == 404
    nothing = run(env, "tenant", "update", A)
    assert nothing.returncode == 1 and "nothing to update" in nothing.stderr

    # delete b: no orphan anywhere, a still works
    deleted = ok_json(env, "tenant", "delete", B, "--wait", "--timeout", "120", "--json")
    assert deleted["state"] == "deleted", deleted
    # router-config and the deprovisioner handle the deletion side by side: allow a moment
    deadline = time.monotonic() + 15
    while (orphans := ok_json(env, "doctor", "--orphans", "--json")) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert orphans == []
    assert resolves(settings, f"{B}.localhost", None) and resolves(settings, f"{A}.localhost", ports[A])
    assert httpx.get(edge, headers={"Host": f"{B}.localhost"}, timeout=5).status_code == 404

    async def a_still_works() -> None:
        await db_works(creds[A]["DATABASE_URL"])
        await cache_checks(creds[A], creds[B]["CACHE_PREFIX"])

    asyncio.run(a_still_works())
