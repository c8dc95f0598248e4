"""The provisioner changes a tenant's idle period (IdleAfterChangeRequested) against
in-memory adapters: written to the runtime's registration and answered with
IdleAfterChanged, idempotently; a command a newer idle change replaced changes nothing;
a tenant without a registered runtime fails for good, nothing written."""

from __future__ import annotations

from functools import partial

import pytest

from contracts.envelope import Envelope
from contracts.events_v1 import IdleAfterChanged, IdleAfterChangeRequested
from contracts.failures_v1 import ProvisioningFailed
from events.failure import handled
from services.provisioner.handlers import HANDLERS, on_idle_after_change_requested, on_tenant_requested
from services.resources.base import TenantOptions
from tests.support.events import requested
from tests.support.memory_resources import memory_resources

TENANT = "acme"
provision = partial(handled, "provisioner", on_tenant_requested)
change = partial(handled, "provisioner", on_idle_after_change_requested)


def idle_change(idle_after_s: int | None, tenant: str = TENANT) -> Envelope:
    return Envelope.new(IdleAfterChangeRequested(idle_after_s=idle_after_s, requested_by="alice"),
                        tenant_id=tenant, producer="api")


async def provisioned():
    res = memory_resources()
    await provision(requested(), res)
    return res


def test_the_provisioner_handles_the_command():
    assert HANDLERS[IdleAfterChangeRequested] is on_idle_after_change_requested


@pytest.mark.parametrize("idle", [0, 60, None])
async def test_the_new_period_is_registered_and_said_once_twice_changes_nothing(idle):
    res = await provisioned()
    before = list(res.journal)
    command = idle_change(idle)
    [fact] = await change(command, res)
    assert isinstance(fact, IdleAfterChanged) and fact.idle_after_s == idle
    assert res.runtime.options[TENANT].idle_after_s == idle
    written = res.journal[len(before):]
    assert written == ([] if idle is None else [f"runtime.set_idle_after:hostplane-acme={idle}"])
    assert [type(e) for e in await change(command, res)] == [IdleAfterChanged], "a redelivery says it again"
    assert res.journal[len(before):] == written, "and writes nothing"


async def test_only_the_idle_period_changes_not_the_runtime_or_the_edge():
    res = memory_resources()
    await provision(requested(edge="dedicated"), res)
    env_ref = res.runtime.services[TENANT]
    await change(idle_change(0), res)
    assert res.runtime.options[TENANT] == TenantOptions(edge="dedicated", idle_after_s=0)
    assert res.runtime.services[TENANT] == env_ref


async def test_a_command_a_newer_idle_change_replaced_changes_nothing_in_any_order():
    res = await provisioned()
    older, newer = idle_change(0), idle_change(300)
    res.recorded.accept(older, "idle")
    res.recorded.accept(newer, "idle")
    assert [e.idle_after_s for e in await change(newer, res)] == [300]
    assert await change(older, res) == [], "a late older change is not applied over the newer one"
    assert res.runtime.options[TENANT].idle_after_s == 300


async def test_a_newer_request_of_another_kind_does_not_supersede_it():
    res = await provisioned()
    command = idle_change(0)
    res.recorded.accept(command, "idle")
    res.recorded.accept(requested(), "update")
    [fact] = await change(command, res)
    assert fact.idle_after_s == 0 and res.runtime.options[TENANT].idle_after_s == 0


@pytest.mark.parametrize("deleted", [False, True])
async def test_a_tenant_without_a_runtime_fails_for_good_and_nothing_is_written(deleted):
    res = memory_resources()
    if deleted:  # provisioned, then its runtime deregistered by a teardown
        await provision(requested(), res)
        await res.runtime.deregister(res.names(TENANT))
    before = list(res.journal)
    [failed] = await change(idle_change(0), res)
    assert isinstance(failed, ProvisioningFailed) and failed.stage == "runtime" and not failed.retryable
    assert f"tenant {TENANT!r} has no registered runtime" in failed.error
    assert res.journal == before and (res.runtime.options.get(TENANT) or TenantOptions()).idle_after_s is None


async def test_a_transient_error_is_retried_and_the_redelivery_converges():
    res = await provisioned()
    res.faults.arm("runtime.set_idle_after", ConnectionResetError("server went away"))
    with pytest.raises(ConnectionResetError):
        await change(idle_change(120), res)
    [fact] = await change(idle_change(120), res)
    assert fact.idle_after_s == 120 and res.runtime.options[TENANT].idle_after_s == 120
