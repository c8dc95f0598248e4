"""Provisioner handler against in-memory adapters: order, convergence, crash-resume,
failures, and passwords kept out of everything that leaves the handler."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest
from structlog.testing import capture_logs

from contracts.events_v1 import TenantProvisioned
from contracts.failures_v1 import ProvisioningFailed
from services.deprovisioner.handlers import on_tenant_deletion_requested
from services.provisioner.handlers import STEPS, on_tenant_requested
from events.failure import handled
from services.resources.base import NO_OPTIONS, PermanentError, TenantOptions
from tests.support.events import deletion, requested
from tests.support.memory_resources import memory_resources

# The handler as its consumer runs it: a PermanentFailure becomes provisioner's failure event.
provision = partial(handled, "provisioner", on_tenant_requested)

TENANT = "acme"
SHA = "ab" * 32
# The fault point of each step, in the order the handler runs them.
STEP_OPS = {"database": "database.ensure", "cache": "cache.ensure", "secret": "secret.ensure",
            "bucket": "bucket.ensure", "runtime": "runtime.register"}


def stored(res, tenant: str = TENANT):
    return res.secrets.values[res.names(tenant).secret]


def assert_consistent(res, tenant: str = TENANT) -> None:
    """The role and the cache user have exactly the passwords the secret holds."""
    names, secret = res.names(tenant), stored(res, tenant)
    assert res.database.roles[names.db_role] == secret["DB_PASSWORD"]
    assert res.cache.users[names.cache_user] == secret["CACHE_PASSWORD"]
    assert secret["DATABASE_URL"] == (f"postgresql://t_acme:{secret['DB_PASSWORD']}@127.0.0.1:5432/t_acme")


async def test_converges_in_order_and_emits_references_only():
    res = memory_resources()
    [event] = await provision(requested(), res)
    assert res.journal == [
        "database.create_role:t_acme", "database.create_database:t_acme", "cache.create_user:t-acme",
        "secret.create:hostplane/tenants/acme", "bucket.create:hostplane-acme-static",
        "runtime.register:hostplane-acme",
    ]
    assert isinstance(event, TenantProvisioned)
    assert (event.database, event.db_role, event.cache_user, event.cache_prefix, event.bucket, event.secret_name,
            event.runtime_service) == ("t_acme", "t_acme", "t-acme", "acme:", "hostplane-acme-static",
                                       "hostplane/tenants/acme", "hostplane-acme")
    assert event.spec_ref == "specs/acme/1.yaml" and event.spec_sha256 == SHA and event.secret_arn
    assert res.runtime.services[TENANT] == "hostplane/tenants/acme"  # the runtime gets its env by reference
    assert_consistent(res)
    secret = stored(res)
    assert secret["DB_PASSWORD"] != secret["CACHE_PASSWORD"]
    for password in (secret["DB_PASSWORD"], secret["CACHE_PASSWORD"]):
        assert password not in event.model_dump_json()
    assert await res.records.state(TENANT) == "provisioned"
    steps = await res.records.steps(TENANT)
    assert list(steps) == list(STEPS)
    assert {s["status"] for s in steps.values()} == {"done"}


@pytest.mark.parametrize("edge", ["pooled", "dedicated"])
async def test_the_chosen_edge_reaches_the_bucket_and_the_runtime(edge):
    res = memory_resources()
    res.faults.arm("runtime.register", ConnectionResetError("server went away"))
    with pytest.raises(ConnectionResetError):
        await provision(requested(edge=edge), res)
    assert res.bucket.options[TENANT] == TenantOptions(edge=edge) and TENANT not in res.runtime.options
    [event] = await provision(requested(edge=edge), res)  # the redelivery carries it again
    assert isinstance(event, TenantProvisioned)
    assert res.bucket.options[TENANT] == res.runtime.options[TENANT] == TenantOptions(edge=edge)


async def test_no_edge_leaves_the_choice_to_the_installation():
    res = memory_resources()
    await provision(requested(), res)
    assert res.bucket.options[TENANT] == res.runtime.options[TENANT] == NO_OPTIONS


async def test_second_call_changes_nothing():
    res = memory_resources()
    first = await provision(requested(), res)
    journal, secret = list(res.journal), dict(stored(res))
    second = await provision(requested(), res)
    assert res.journal == journal, "a second run must not create, update or rotate anything"
    assert stored(res) == secret
    assert second == first
    steps = await res.records.steps(TENANT)
    assert {s["outcome"] for s in steps.values()} == {"unchanged"}
    assert {s["attempts"] for s in steps.values()} == {2}


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("step", STEPS)
async def test_a_crash_at_any_step_resumes_there_on_redelivery(step, when):
    res = memory_resources()
    res.faults.arm(STEP_OPS[step], ConnectionResetError("server went away"), when=when)
    with pytest.raises(ConnectionResetError):  # transient: the consumer retries the message
        await provision(requested(), res)
    steps = await res.records.steps(TENANT)
    done = list(STEPS[:STEPS.index(step)])
    assert [s for s, row in steps.items() if row["status"] == "done"] == done
    assert steps[step]["status"] == "failed" and steps[step]["error"] == "retrying after ConnectionResetError"
    assert await res.records.state(TENANT) == "provisioning"

    [event] = await provision(requested(), res)
    assert isinstance(event, TenantProvisioned)
    creations = [j for j in res.journal if "create" in j or "register" in j]
    assert len(creations) == len(set(creations)) == 6, f"nothing is created twice: {res.journal}"
    assert_consistent(res)
    assert await res.records.state(TENANT) == "provisioned"
    journal = list(res.journal)
    await provision(requested(), res)
    assert res.journal == journal


async def test_a_password_is_only_replaced_when_no_secret_holds_it():
    res = memory_resources()
    res.faults.arm("cache.ensure", ConnectionResetError(), when="after")  # role + user made, secret not
    with pytest.raises(ConnectionResetError):
        await provision(requested(), res)
    await provision(requested(), res)
    # Nobody could use the lost passwords: both were replaced, once, before the secret was written.
    assert res.journal.count("database.set_password:t_acme") == 1
    assert_consistent(res)

    secret = dict(stored(res))
    res.database.roles["t_acme"] = "changed-behind-our-back"
    await provision(requested(), res)
    assert stored(res) == secret, "a working password in the secret is never rotated"
    assert res.journal.count("database.set_password:t_acme") == 2  # the drifted role was repaired
    assert_consistent(res)


@pytest.mark.parametrize("step", STEPS)
async def test_a_permanent_error_ends_with_provisioning_failed_naming_the_step(step):
    res = memory_resources()
    res.faults.arm(STEP_OPS[step], PermanentError(f"{step} refused: QuotaExceeded"))
    [event] = await provision(requested(), res)
    assert event == ProvisioningFailed(stage=step, error=f"{step} refused: QuotaExceeded", retryable=False)
    steps = await res.records.steps(TENANT)
    assert list(steps) == list(STEPS[:STEPS.index(step) + 1]), "nothing after the failed step runs"
    assert await res.records.state(TENANT) == "failed"
    assert TENANT in await res.records.live_tenants(), "a failed tenant keeps its resources for a retry"

    [retried] = await provision(requested(), res)  # e.g. a replay after the quota was raised
    assert isinstance(retried, TenantProvisioned)


async def test_error_text_never_carries_a_password():
    res = memory_resources()
    await provision(requested(), res)
    password = stored(res)["DB_PASSWORD"]
    res.faults.arm("bucket.ensure", PermanentError(f"refused, request was postgresql://t_acme:{password}@x"))
    [event] = await provision(requested(), res)
    assert isinstance(event, ProvisioningFailed)
    assert password not in event.error and "<redacted>" in event.error
    assert password not in str((await res.records.steps(TENANT))["bucket"])


async def test_passwords_never_reach_logs_events_errors_or_records():
    res = memory_resources()
    written = []  # every credentials document the handler stored, to know every password
    real_ensure = res.secrets.ensure

    async def recording_ensure(names, creds):
        written.append(creds)
        return await real_ensure(names, creds)

    res.secrets.ensure = recording_ensure
    res.faults.arm("secret.ensure", ConnectionResetError("lost"), when="after")
    errors, events = [], []
    with capture_logs() as logs:
        with pytest.raises(ConnectionResetError) as crash:
            await provision(requested(), res)
        errors.append(repr(crash.value))
        res.faults.arm("bucket.ensure", PermanentError("bucket refused: AccessDenied"))
        events += await provision(requested(), res)  # ProvisioningFailed
        events += await provision(requested(), res)  # TenantProvisioned
        events += await on_tenant_deletion_requested(deletion(), res)
    passwords = {c.DB_PASSWORD.get_secret_value() for c in written} | {
        c.CACHE_PASSWORD.get_secret_value() for c in written}
    assert len(passwords) == 2 and [type(e).__name__ for e in events] == [
        "ProvisioningFailed", "TenantProvisioned", "TenantDeprovisioned"]
    seen = "\n".join([repr(x) for x in logs] + errors + [e.model_dump_json() for e in events] + res.journal
                     + [repr(c) for c in written] + [str(c) for c in written]
                     + [str(await res.records.steps(TENANT)), str(res.records.tenants)])
    assert logs
    for password in passwords:
        assert password not in seen


async def test_a_request_older_than_the_deletion_is_stale_and_ignored():
    res = memory_resources()
    now = datetime.now(UTC)
    await on_tenant_deletion_requested(deletion(at=now), res)
    assert await provision(requested(at=now - timedelta(seconds=5)), res) == []
    assert res.journal == [] and await res.records.state(TENANT) == "deprovisioned"
    [event] = await provision(requested(at=now + timedelta(seconds=5)), res)  # re-created later
    assert isinstance(event, TenantProvisioned)


async def test_deletion_waits_for_a_provisioning_in_progress():
    res = memory_resources()
    gate = asyncio.Event()
    real = res.cache.ensure

    async def slow_cache(names, password):
        await gate.wait()
        return await real(names, password)

    res.cache.ensure = slow_cache
    now = datetime.now(UTC)
    provisioning = asyncio.create_task(provision(requested(at=now), res))
    await asyncio.sleep(0.01)
    deleting = asyncio.create_task(on_tenant_deletion_requested(deletion(at=now + timedelta(seconds=1)), res))
    await asyncio.sleep(0.01)
    assert not deleting.done(), "teardown must not start in the middle of a set-up"
    gate.set()
    [provisioned], [deprovisioned] = await asyncio.wait_for(asyncio.gather(provisioning, deleting), 5)
    assert isinstance(provisioned, TenantProvisioned) and deprovisioned.event_type == "TenantDeprovisioned"
    assert not res.database.roles and not res.cache.users and not res.secrets.values and not res.bucket.buckets
