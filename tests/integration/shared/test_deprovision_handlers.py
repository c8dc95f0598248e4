"""The deprovisioner on the real servers (both emulators): nothing of the tenant is
left — keys in every database, object versions, open sessions, artifacts, runtime —
the orphan scan agrees, and the neighbour keeps working."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
import redis.asyncio as aredis

from contracts.events_v1 import TenantDeprovisioned, TenantProvisioned
from hostplane.doctor import find_orphans
from services.deprovisioner.handlers import on_tenant_deletion_requested, remaining
from services.provisioner.handlers import on_tenant_requested
from services.resources.base import NO_OPTIONS
from tests.support.events import deletion, requested

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


async def orphans_of(res, *tenants: str) -> list:
    return [o for o in await find_orphans(res) if o.tenant in tenants]


async def credentials(res, tenant: str) -> dict[str, str]:
    return (await res.secrets.read(res.names(tenant))).env()


async def test_deprovisioning_leaves_nothing_and_spares_the_neighbour(res, tenant, other):
    for t in (tenant, other):
        assert isinstance((await on_tenant_requested(requested(t), res))[0], TenantProvisioned)
    names, env, theirs = res.names(tenant), await credentials(res, tenant), await credentials(res, other)
    cache = aredis.Redis.from_url(env["REDIS_URL"], socket_timeout=5)
    await cache.mset({f"{names.cache_prefix}{i}": i for i in range(1200)})  # more than one SCAN batch
    other_cache = aredis.Redis.from_url(theirs["REDIS_URL"], socket_timeout=5)
    await other_cache.set(f"{theirs['CACHE_PREFIX']}kept", "yes")
    stray = aredis.Redis.from_url(res.cache.url, db=3)  # a tenant key in another database (admin-written)
    await stray.set(f"{names.cache_prefix}elsewhere", "x")
    s3 = res.bucket.client
    await s3.put_bucket_versioning(Bucket=names.bucket, VersioningConfiguration={"Status": "Enabled"})
    for body in (b"1", b"2"):
        await s3.put_object(Bucket=names.bucket, Key="static/app.js", Body=body)
    release = res.artifacts.folder(names) / "releases" / "1"
    release.mkdir(parents=True)
    (release / "app.pyz").write_bytes(b"PK")
    session = await asyncpg.connect(env["DATABASE_URL"], timeout=5)  # an app still connected

    [event] = await on_tenant_deletion_requested(deletion(tenant), res)

    assert isinstance(event, TenantDeprovisioned)
    assert set(event.removed) == {
        f"runtime:{names.runtime_service}", f"database:{names.database}", f"role:{names.db_role}",
        f"cache_user:{names.cache_user}", f"cache_keys:{names.cache_prefix}*", f"bucket:{names.bucket}",
        f"secret:{names.secret}", f"artifacts:{names.artifact_dir}"}
    assert session.is_closed() or await _dead(session), "open sessions are terminated"
    assert await remaining(names, res) == []
    assert await stray.exists(f"{names.cache_prefix}elsewhere") == 0
    assert await orphans_of(res, tenant, other) == []
    assert await res.records.state(tenant) == "deprovisioned"
    with pytest.raises(asyncpg.InvalidPasswordError):  # the role is gone
        await asyncpg.connect(env["DATABASE_URL"], timeout=5)

    assert await other_cache.get(f"{theirs['CACHE_PREFIX']}kept") == b"yes"
    conn = await asyncpg.connect(theirs["DATABASE_URL"], timeout=5)
    await conn.close()
    for client in (cache, other_cache, stray):
        await client.aclose()


async def _dead(session: asyncpg.Connection) -> bool:
    try:
        await session.fetchval("SELECT 1")
    except (asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError, OSError):
        return True
    return False


@pytest.mark.parametrize("crash_after", ["database", "cache"])
async def test_a_half_created_tenant_is_removed_and_the_scan_stays_clean(res, tenant, crash_after):
    adapter = {"database": res.database, "cache": res.cache}[crash_after]
    real = adapter.ensure

    async def dies_after(names, password):
        await real(names, password)
        raise ConnectionResetError("killed")

    adapter.ensure = dies_after
    with pytest.raises(ConnectionResetError):
        await on_tenant_requested(requested(tenant), res)
    adapter.ensure = real
    assert await res.records.state(tenant) == "provisioning"
    assert await orphans_of(res, tenant) == [], "a tenant being provisioned is live, not an orphan"
    [event] = await on_tenant_deletion_requested(deletion(tenant), res)
    assert isinstance(event, TenantDeprovisioned) and event.removed
    assert await remaining(res.names(tenant), res) == []
    assert await orphans_of(res, tenant) == []


async def test_deleting_twice_or_deleting_a_stranger_succeeds(res, tenant):
    await on_tenant_requested(requested(tenant), res)
    [first] = await on_tenant_deletion_requested(deletion(tenant), res)
    [again] = await on_tenant_deletion_requested(deletion(tenant), res)
    [stranger] = await on_tenant_deletion_requested(deletion("never-was-here"), res)
    assert first.removed and again == stranger == TenantDeprovisioned(removed=[])
    await res.records.pool.execute("DELETE FROM provisioned_tenants WHERE tenant_id = 'never-was-here'")


async def test_a_deletion_during_provisioning_waits_and_leaves_nothing(res, tenant):
    now = datetime.now(UTC)
    real = res.bucket.ensure

    async def slow_bucket(names, options=NO_OPTIONS):
        await asyncio.sleep(0.5)
        return await real(names, options)

    res.bucket.ensure = slow_bucket
    provisioning = asyncio.create_task(on_tenant_requested(requested(tenant, at=now), res))
    await asyncio.sleep(0.1)
    deleting = asyncio.create_task(on_tenant_deletion_requested(deletion(tenant, at=now + timedelta(seconds=1)), res))
    [made], [gone] = await asyncio.wait_for(asyncio.gather(provisioning, deleting), 30)
    assert isinstance(made, TenantProvisioned) and isinstance(gone, TenantDeprovisioned)
    assert f"bucket:{res.names(tenant).bucket}" in gone.removed, "the teardown ran after the set-up finished"
    assert await remaining(res.names(tenant), res) == []
    # A late (or replayed) request older than the deletion does not bring the tenant back.
    assert await on_tenant_requested(requested(tenant, at=now), res) == []
    assert await remaining(res.names(tenant), res) == []
