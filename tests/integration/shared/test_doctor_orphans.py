"""The orphan doctor against real servers: every kind of leftover is named with its
tenant, live tenants are not, and `hostplane doctor --orphans` prints nothing after a
sequence of creates and deletes (on a platform of its own, so nobody else's leftovers
count)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
import subprocess
import sys

import pytest

from hostplane.doctor import find_orphans
from hostplane.local.ephemeral import start_platform, stop_platform
from core.state import load_or_create_credentials
from services.deprovisioner.handlers import on_tenant_deletion_requested
from services.provisioner.handlers import on_tenant_requested
from services.resources.secret import TenantCredentials
from services.resources.wiring import resources
from services.router_config.routes import Route
from services.router_config.store import RouteStore
from tests.support.events import deletion, requested
from tests.support.tenant_resources import new_tenant

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def add_route(res, tenant: str) -> None:
    """A live route row, as router-config writes it: the route resolver answers its host."""
    names = res.names(tenant)
    store = RouteStore(res.records.pool)
    await store.ensure_schema()
    await store.save(Route(tenant, names.route_id, (names.host,), "127.0.0.1:1", names.bucket), None, None)


async def remove_route(res, tenant: str) -> None:
    names = res.names(tenant)
    await RouteStore(res.records.pool).tombstone(
        Route(tenant, names.route_id, (names.host,), "", names.bucket), datetime.now(UTC))


async def leave_everything_behind(res, tenant: str) -> None:
    """Every kind of tenant resource, with no provisioner record: all orphans."""
    names = res.names(tenant)
    db = await res.database.ensure(names, None)
    cache = await res.cache.ensure(names, None)
    await res.cache.client.set(f"{names.cache_prefix}k", "v")
    await res.secrets.ensure(names, TenantCredentials.build(names, res.endpoints, db.value, cache.value))
    await res.bucket.ensure(names)
    await res.runtime.register(names, env_ref=names.secret)
    (res.artifacts.folder(names) / "releases").mkdir(parents=True)
    await add_route(res, tenant)


async def test_every_kind_of_orphan_is_named_and_live_tenants_are_not(res, tenant, other):
    await on_tenant_requested(requested(other), res)  # live
    await leave_everything_behind(res, tenant)
    try:
        found = [o for o in await find_orphans(res) if o.tenant in (tenant, other)]
        names = res.names(tenant)
        assert {(o.kind, o.name) for o in found} == {
            ("database", names.database), ("role", names.db_role), ("cache_user", names.cache_user),
            ("cache_keys", names.cache_prefix), ("bucket", names.bucket), ("secret", names.secret),
            ("route", names.route_id), ("artifacts", names.artifact_dir), ("runtime", names.runtime_service),
        }
        assert {o.tenant for o in found} == {tenant}
        assert next(o for o in found if o.kind == "cache_keys").detail == "1 keys"

        # Traffic stops first: the teardown waits while the edge still routes the tenant; the
        # route is router-config's to remove (it consumes the same event), played here.
        teardown = asyncio.create_task(on_tenant_deletion_requested(deletion(tenant), res))
        await asyncio.sleep(1.0)
        assert not teardown.done() and await res.database.existing(names), "nothing goes while routed"
        await remove_route(res, tenant)
        await asyncio.wait_for(teardown, 60)
        assert [o for o in await find_orphans(res) if o.tenant == tenant] == []
    finally:
        await remove_route(res, tenant)
    assert [o for o in await find_orphans(res) if o.tenant in (tenant, other)] == []


def doctor(platform, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "hostplane.cli_doctor", *args], env=platform.env(),
                          capture_output=True, text=True, timeout=60)
    creds = load_or_create_credentials(platform.settings.home_dir)
    assert creds.postgres_password not in done.stdout + done.stderr
    assert creds.valkey_password not in done.stdout + done.stderr
    return done


@pytest.fixture(scope="module")
def own_platform(tmp_path_factory):
    running = start_platform(tmp_path_factory.mktemp("doctor-home"), "moto")
    try:
        yield running
    finally:
        stop_platform(running)


async def test_the_command_prints_nothing_after_creates_and_deletes(own_platform):
    a, b, c = new_tenant(), new_tenant(), new_tenant()
    async with resources(own_platform.settings) as res:
        for t in (a, b):
            await on_tenant_requested(requested(t), res)
        real = res.secrets.ensure

        async def dies(names, creds):  # c is half-created: database and cache user, no secret
            raise ConnectionResetError("killed")

        res.secrets.ensure = dies
        with pytest.raises(ConnectionResetError):
            await on_tenant_requested(requested(c), res)
        res.secrets.ensure = real
        for t in (a, c):
            await on_tenant_deletion_requested(deletion(t), res)
        await on_tenant_requested(requested(a), res)  # re-created
        for t in (a, b):
            await on_tenant_deletion_requested(deletion(t), res)

        text, as_json = doctor(own_platform, "--orphans"), doctor(own_platform, "--orphans", "--json")
        assert (text.returncode, text.stdout) == (0, ""), text.stderr
        assert (as_json.returncode, json.loads(as_json.stdout)) == (0, []), as_json.stderr

        leftover = res.names(new_tenant())
        await res.bucket.ensure(leftover)
        try:
            found = doctor(own_platform, "--orphans", "--json")
            assert found.returncode == 1
            assert json.loads(found.stdout) == [
                {"kind": "bucket", "name": leftover.bucket, "tenant": leftover.tenant_id, "detail": ""}]
            line = doctor(own_platform, "--orphans")
            assert line.returncode == 1 and leftover.bucket in line.stdout
        finally:
            await res.bucket.remove(leftover)


def test_the_command_says_when_the_platform_is_not_running(tmp_path):
    from hostplane.local.ephemeral import RunningPlatform, platform_settings

    down = RunningPlatform(settings=platform_settings(tmp_path / "none", "moto"), conn=None, emulator="moto")  # type: ignore[arg-type]
    done = subprocess.run([sys.executable, "-m", "hostplane.cli_doctor", "--orphans"], env=down.env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "hostplane up" in " ".join(done.stderr.split())
