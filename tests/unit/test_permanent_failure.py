"""One way to fail for good: a handler raises PermanentFailure, and what its consumer emits
is the service's declared *Failed event (events.failure.handled, which the consumer runs)."""

from __future__ import annotations

import pytest

from contracts.envelope import Envelope
from contracts.events_v1 import TenantDeletionRequested
from contracts.failures_v1 import (
    SERVICE_FAILURES,
    SERVICE_STAGES,
    BuildFailed,
    DeprovisioningFailed,
    MigrationFailed,
    ProvisioningFailed,
    RouteFailed,
)
from events.failure import PermanentFailure, handled
from services.router_config.store import HostTaken

ENVELOPE = Envelope.new(TenantDeletionRequested(), tenant_id="acme", producer="api")


def failing(exc: Exception):
    async def handler(envelope, deps):
        raise exc
    return handler


def test_every_stage_service_declares_one_failure_event_of_its_own_stage():
    assert set(SERVICE_FAILURES) == set(SERVICE_STAGES)
    for service, model in SERVICE_FAILURES.items():
        assert model.lifecycle_stage == SERVICE_STAGES[service], service
        assert service in model.producers, service


@pytest.mark.parametrize("service, details, expected", [
    ("provisioner", {}, ProvisioningFailed(stage="database", error="quota", retryable=False)),
    ("builder", {"spec_sha256": "ab" * 32},
     BuildFailed(stage="database", error="quota", retryable=False, spec_sha256="ab" * 32)),
    ("migrator", {"version": 3}, MigrationFailed(stage="database", error="quota", retryable=False, version=3)),
    ("router-config", {"hosts": ["acme.localhost"]},
     RouteFailed(stage="database", error="quota", retryable=False, hosts=["acme.localhost"])),
    ("deprovisioner", {"remaining": ["bucket:b"]},
     DeprovisioningFailed(stage="database", error="quota", retryable=False, remaining=["bucket:b"])),
])
async def test_a_permanent_failure_becomes_the_services_failure_event(service, details, expected):
    assert await handled(service, failing(PermanentFailure("database", "quota", **details)), ENVELOPE, None) == [
        expected]


async def test_anything_else_is_raised_for_a_retry_and_results_pass_through():
    with pytest.raises(ConnectionResetError):
        await handled("builder", failing(ConnectionResetError()), ENVELOPE, None)

    async def quiet(envelope, deps):
        return None

    assert await handled("builder", quiet, ENVELOPE, None) == []


async def test_a_host_another_tenant_routes_is_route_failed_naming_the_hosts():
    taken = HostTaken("host shop.example.com is already routed to tenant beta", ("acme.localhost", "shop.example.com"))
    [event] = await handled("router-config", failing(taken), ENVELOPE, None)
    assert event == RouteFailed(stage="hosts", error="host shop.example.com is already routed to tenant beta",
                                retryable=False, hosts=["acme.localhost", "shop.example.com"])
