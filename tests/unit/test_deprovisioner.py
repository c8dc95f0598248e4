"""Deprovisioner handler against in-memory adapters: order, convergence on half-created
and absent tenants, failures that leave a report, and ordering against re-creation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial

import pytest

from contracts.events_v1 import TenantDeprovisioned, TenantProvisioned
from contracts.failures_v1 import DeprovisioningFailed
from services.deprovisioner.handlers import on_tenant_deletion_requested
from events.failure import handled
from services.provisioner.handlers import on_tenant_requested
from services.resources.base import PermanentError
from tests.support.memory_resources import memory_resources
from tests.support.events import TENANT, deletion, requested

# The handler as its consumer runs it: a PermanentFailure becomes deprovisioner's failure event.
deprovision = partial(handled, "deprovisioner", on_tenant_deletion_requested)

EVERYTHING = ["runtime:hostplane-acme", "database:t_acme", "role:t_acme", "cache_user:t-acme",
              "cache_keys:acme:*", "bucket:hostplane-acme-static", "secret:hostplane/tenants/acme",
              "artifacts:acme"]


async def provisioned(res=None, tenant: str = TENANT):
    res = res or memory_resources()
    await on_tenant_requested(requested(tenant), res)
    res.cache.keys |= {f"{tenant}:session:1": b"x", f"{tenant}:count": b"2"}
    res.artifacts.folders.add(tenant)
    res.journal.clear()
    return res


def nothing_left(res) -> bool:
    return not (res.database.roles or res.database.databases or res.cache.users or res.cache.keys
                or res.secrets.values or res.bucket.buckets or res.runtime.services or res.artifacts.folders)


async def test_removes_everything_in_order_and_reports_it():
    res = await provisioned()
    [event] = await deprovision(deletion(), res)
    assert res.journal == [
        "runtime.deregister:hostplane-acme", "database.drop_database:t_acme", "database.drop_role:t_acme",
        "cache.deluser:t-acme", "cache.unlink:acme:*", "bucket.delete:hostplane-acme-static",
        "secret.delete:hostplane/tenants/acme", "artifacts.remove:acme",
    ]
    assert event == TenantDeprovisioned(removed=EVERYTHING)
    assert nothing_left(res)
    assert await res.records.state(TENANT) == "deprovisioned"
    assert await res.records.steps(TENANT) == {}
    assert TENANT not in await res.records.live_tenants()


async def test_second_call_changes_nothing_and_still_succeeds():
    res = await provisioned()
    await deprovision(deletion(), res)
    res.journal.clear()
    [event] = await deprovision(deletion(), res)
    assert event == TenantDeprovisioned(removed=[]) and res.journal == []


async def test_a_tenant_that_never_existed_is_deleted_without_fuss():
    res = memory_resources()
    [event] = await deprovision(deletion("ghost"), res)
    assert event == TenantDeprovisioned(removed=[])
    assert await res.records.state("ghost") == "deprovisioned"


@pytest.mark.parametrize("crash_at", ["database.ensure", "cache.ensure", "secret.ensure", "bucket.ensure"])
async def test_a_half_created_tenant_is_removed_completely(crash_at):
    res = memory_resources()
    res.faults.arm(crash_at, ConnectionResetError(), when="after")
    with pytest.raises(ConnectionResetError):
        await on_tenant_requested(requested(), res)
    [event] = await deprovision(deletion(), res)
    assert isinstance(event, TenantDeprovisioned) and event.removed
    assert nothing_left(res)


async def test_a_permanent_failure_still_removes_the_rest_and_names_what_remains():
    res = await provisioned()
    res.faults.arm("bucket.remove", PermanentError("S3 refused to delete bucket hostplane-acme-static: AccessDenied"))
    [event] = await deprovision(deletion(), res)
    assert isinstance(event, DeprovisioningFailed)
    assert event.stage == "bucket" and "AccessDenied" in event.error and not event.retryable
    assert event.remaining == ["bucket:hostplane-acme-static"]
    assert "secret.delete:hostplane/tenants/acme" in res.journal, "steps after the failure still ran"
    assert await res.records.state(TENANT) == "deprovisioning"
    assert TENANT not in await res.records.live_tenants(), "its leftovers are orphans until removed"

    [retried] = await deprovision(deletion(), res)  # a replay once fixed
    assert retried == TenantDeprovisioned(removed=["bucket:hostplane-acme-static"])
    assert nothing_left(res)


async def test_a_transient_failure_is_retried_by_redelivery():
    res = await provisioned()
    res.faults.arm("cache.remove_keys", ConnectionResetError())
    with pytest.raises(ConnectionResetError):
        await deprovision(deletion(), res)
    [event] = await deprovision(deletion(), res)
    assert isinstance(event, TenantDeprovisioned)
    assert "cache_keys:acme:*" in event.removed and nothing_left(res)


async def test_something_still_there_after_teardown_is_reported():
    res = await provisioned()

    async def forgets(names):  # a remover that says it is done but is not
        return []

    res.bucket.remove = forgets
    [event] = await deprovision(deletion(), res)
    assert isinstance(event, DeprovisioningFailed)
    assert (event.stage, event.remaining, event.retryable) == ("verify", ["bucket:hostplane-acme-static"], True)


async def test_a_deletion_older_than_a_re_creation_is_stale_and_ignored():
    now = datetime.now(UTC)
    res = memory_resources()
    await on_tenant_requested(requested(at=now), res)
    res.journal.clear()
    assert await deprovision(deletion(at=now - timedelta(seconds=1)), res) == []
    assert res.journal == [] and await res.records.state(TENANT) == "provisioned"


async def test_a_deleted_tenant_can_be_created_again_from_scratch():
    res = await provisioned()
    await deprovision(deletion(), res)
    res.journal.clear()
    [event] = await on_tenant_requested(requested(), res)
    assert isinstance(event, TenantProvisioned)
    assert "database.create_role:t_acme" in res.journal and "secret.create:hostplane/tenants/acme" in res.journal
    assert {s["attempts"] for s in (await res.records.steps(TENANT)).values()} == {1}


async def test_other_tenants_are_untouched():
    res = await provisioned()
    await provisioned(res, "other")
    await deprovision(deletion(), res)
    assert "t_other" in res.database.databases and "t-other" in res.cache.users
    assert set(res.cache.keys) == {"other:session:1", "other:count"}
    assert res.artifacts.folders == {"other"} and "other" in await res.records.live_tenants()


class FakeEdge:
    """Serves the tenant's route for `answers` more reads, then stops (router-config removed it)."""

    def __init__(self, answers: int | None) -> None:
        self.answers, self.reads = answers, 0

    async def serves(self, names) -> bool:
        self.reads += 1
        return self.answers is None or self.reads <= self.answers


async def test_traffic_stops_before_anything_is_removed():
    res = await provisioned()
    res.edge = FakeEdge(answers=3)
    [event] = await deprovision(deletion(), res)
    assert isinstance(event, TenantDeprovisioned) and res.edge.reads == 4 and nothing_left(res)


async def test_a_route_that_stays_is_retried_by_redelivery_and_removes_nothing(monkeypatch):
    import services.deprovisioner.handlers as handlers

    monkeypatch.setattr(handlers, "ROUTE_WAIT_S", 0.3)
    res = await provisioned()
    res.edge = FakeEdge(answers=None)
    with pytest.raises(handlers.RouteStillServed, match="tenant-acme"):
        await handlers.on_tenant_deletion_requested(deletion(), res)
    assert res.journal == [] and res.runtime.services, "nothing is torn down while the edge still routes"
