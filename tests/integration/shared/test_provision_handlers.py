"""The provisioner handler on the real servers (both emulators): a tenant that works
with the credentials in its secret, a second run that changes nothing, a crash between
steps that the next delivery finishes, and passwords that appear nowhere else."""

from __future__ import annotations

import logging
from functools import partial

import asyncpg
import pytest
import redis.asyncio as aredis
from structlog.testing import capture_logs

from events.failure import handled
from contracts.events_v1 import TenantProvisioned
from contracts.failures_v1 import ProvisioningFailed
from services.deprovisioner.handlers import on_tenant_deletion_requested
from services.provisioner.handlers import STEPS, on_tenant_requested
from services.resources.base import NO_OPTIONS, PermanentError
from tests.support.events import deletion, requested

# The handlers as their consumers run them: a PermanentFailure becomes the service's failure event.
provision = partial(handled, "provisioner", on_tenant_requested)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


async def fingerprint(res, tenant: str) -> dict:
    """Everything a re-run could change: role verifier, ACL user, secret versions, bucket, runtime."""
    names = res.names(tenant)
    admin = res.records.pool
    return {
        "role": await admin.fetchval("SELECT hostplane_role_verifier($1)", names.db_role),  # pg_authid: superuser only
        "db": await admin.fetchval("SELECT datacl::text FROM pg_database WHERE datname = $1", names.database),
        "acl": await res.cache.client.execute_command("ACL", "GETUSER", names.cache_user),
        "secret": (await res.secrets.client.describe_secret(SecretId=names.secret))["VersionIdsToStages"],
        "bucket": await res.bucket.is_private(names),
        "runtime": await admin.fetchval("SELECT updated_at FROM runtime_services WHERE tenant_id = $1", tenant),
    }


async def test_a_provisioned_tenant_works_with_the_credentials_in_its_secret(res, tenant):
    [event] = await provision(requested(tenant), res)
    names = res.names(tenant)
    assert isinstance(event, TenantProvisioned) and event.database == names.database
    meta = await res.secrets.client.describe_secret(SecretId=names.secret)
    assert event.secret_arn == meta["ARN"] and event.secret_name == names.secret
    env = (await res.secrets.read(names)).env()
    conn = await asyncpg.connect(env["DATABASE_URL"], timeout=5)
    try:
        assert await conn.fetchval("SELECT current_database()") == names.database
    finally:
        await conn.close()
    cache = aredis.Redis.from_url(env["REDIS_URL"], socket_timeout=5)
    try:
        await cache.set(f"{env['CACHE_PREFIX']}hits", 1)
        assert await cache.incr(f"{env['CACHE_PREFIX']}hits") == 2
    finally:
        await cache.aclose()
    assert env["BUCKET"] in await res.bucket.all_names() and await res.bucket.is_private(names)
    row = await res.records.pool.fetchrow("SELECT env_ref, desired_state FROM runtime_services WHERE tenant_id = $1",
                                          tenant)
    assert dict(row) == {"env_ref": names.secret, "desired_state": "running"}
    assert await res.records.state(tenant) == "provisioned"


async def test_a_second_run_changes_nothing(res, tenant):
    first = await provision(requested(tenant), res)
    before = await fingerprint(res, tenant)
    second = await provision(requested(tenant), res)
    assert await fingerprint(res, tenant) == before, "no rotation, no rewrite, no runtime restart"
    assert second == first
    assert {s["outcome"] for s in (await res.records.steps(tenant)).values()} == {"unchanged"}


@pytest.mark.parametrize("step", ["cache", "secret", "bucket"])
async def test_a_crash_after_a_step_is_finished_by_the_next_delivery(res, tenant, step):
    adapter = {"cache": res.cache, "secret": res.secrets, "bucket": res.bucket}[step]
    real = adapter.ensure

    async def dies_after(*args, **kwargs):
        await real(*args, **kwargs)
        raise ConnectionResetError("killed after the work, before recording it")

    adapter.ensure = dies_after
    with pytest.raises(ConnectionResetError):
        await provision(requested(tenant), res)
    adapter.ensure = real
    steps = await res.records.steps(tenant)
    assert [s for s in STEPS if steps.get(s, {}).get("status") == "done"] == list(STEPS[:STEPS.index(step)])

    [event] = await provision(requested(tenant), res)
    assert isinstance(event, TenantProvisioned)
    env = (await res.secrets.read(res.names(tenant))).env()
    conn = await asyncpg.connect(env["DATABASE_URL"], timeout=5)
    await conn.close()
    cache = aredis.Redis.from_url(env["REDIS_URL"], socket_timeout=5)
    assert await cache.ping()
    await cache.aclose()


async def test_passwords_appear_in_no_log_event_error_or_server_log(res, tenant, running_platform, caplog):
    passwords: set[str] = set()
    for adapter in (res.database, res.cache):
        real = adapter.ensure

        async def keeping(names, password, _real=real):
            ensured = await _real(names, password)
            passwords.add(ensured.value.get_secret_value())
            return ensured

        adapter.ensure = keeping
    real_bucket = res.bucket.ensure

    async def crash_once(names, options=NO_OPTIONS):
        res.bucket.ensure = real_bucket
        raise ConnectionResetError("lost the emulator")

    res.bucket.ensure = crash_once
    caplog.set_level(logging.DEBUG)
    events, errors = [], []
    with capture_logs() as logs:
        with pytest.raises(ConnectionResetError) as crash:
            await provision(requested(tenant), res)
        errors.append(repr(crash.value))
        res.runtime.register, real_register = _refusing, res.runtime.register
        events += await provision(requested(tenant), res)
        res.runtime.register = real_register
        events += await provision(requested(tenant), res)
        events += await on_tenant_deletion_requested(deletion(tenant), res)
    assert [type(e).__name__ for e in events] == ["ProvisioningFailed", "TenantProvisioned", "TenantDeprovisioned"]
    assert isinstance(events[0], ProvisioningFailed) and events[0].stage == "runtime"
    assert len(passwords) == 2, "the retries kept the passwords the secret held"
    server_logs = "".join(p.read_text(errors="replace") for p in (running_platform.settings.home_dir / "logs").glob("*.log"))
    records = str(await res.records.pool.fetch("SELECT * FROM provisioning_steps WHERE tenant_id = $1", tenant))
    seen = "\n".join([repr(x) for x in logs] + [r.getMessage() for r in caplog.records] + errors
                     + [e.model_dump_json() for e in events] + [server_logs, records])
    assert logs
    for password in passwords:
        assert password not in seen


async def _refusing(names, env_ref, options=NO_OPTIONS):
    raise PermanentError("runtime refused: quota of services reached")
