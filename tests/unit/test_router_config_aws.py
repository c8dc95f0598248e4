"""Router-config on the AWS target against a fake Automation workspace: the route is the
tenant stack's route keys (routed, customDomain), written beside the provisioner's keys
without undoing them; the same ordering guards and host rule as locally."""

from __future__ import annotations

import os

import pytest

from contracts.events_v1 import RouteConfigured, RouteRemoved
from contracts.tenant import tenant_names
from services.resources.aws.stacks import ROUTE_KEYS, StackSettings, TenantStacks
from services.resources.base import TenantOptions
from services.router_config.aws import StackNotProvisioned, StackRouterDeps
from services.router_config.store import HostTaken
from services.router_config.handlers import on_domain_change_requested, on_tenant_deletion_requested, \
    on_tenant_provisioned
from tests.support.aws_fakes import FakeWorkspace
from tests.support.router_fakes import FakeStore, deletion, domain_change, provisioned

pytestmark = pytest.mark.timeout(30)

BASE = "apps.example.com"
SETTINGS = StackSettings(backend_url="s3://state/hostplane", secrets_provider="awskms://alias/hostplane?region=eu-west-1",
                         platform_stack="org/hostplane-platform/prod", region="eu-west-1",
                         base_config={"image": "reloader:1", "zoneId": "Z1", "baseDomain": BASE, "edge": "pooled"})


@pytest.fixture
def ws() -> FakeWorkspace:
    return FakeWorkspace()


@pytest.fixture
def stacks(ws) -> TenantStacks:
    return TenantStacks(SETTINGS, workspace=ws, backoff_s=0)


class FakeCertificates:
    def __init__(self) -> None:
        self.issued_for: set[str] = set()  # domains whose owner added the validation records
        self.asked: list[str] = []

    async def issued(self, arn: str) -> bool:
        self.asked.append(arn)
        return arn.rsplit("/", 1)[-1] in self.issued_for


class Outbox:
    """The store's pool, as far as attach_pending writes events through it."""

    def __init__(self) -> None:
        self.rows: list[tuple] = []

    def acquire(self):
        outbox = self

        class Conn:
            async def __aenter__(self):
                return self

            async def __aexit__(self, *exc):
                return False

            async def executemany(self, sql, rows):
                outbox.rows += rows

        return Conn()


@pytest.fixture
def deps(stacks) -> StackRouterDeps:
    store = FakeStore({})
    store.pool = Outbox()
    return StackRouterDeps(store=store, stacks=stacks, prefix="hostplane", base_domain=BASE,  # type: ignore[arg-type]
                           certificates=FakeCertificates())


def config(ws, tenant="acme") -> dict[str, str]:
    return {k.removeprefix("hostplane:"): v for k, v in ws.stacks[f"hostplane-{tenant}"].config.items()}


async def test_the_tenants_edge_choice_reaches_its_stack_and_the_default_stays_the_installations(stacks, ws):
    await stacks.converge(tenant_names("acme"), TenantOptions(edge="dedicated"))
    await stacks.converge(tenant_names("beta"))
    assert config(ws, "acme")["edge"] == "dedicated"
    assert config(ws, "beta")["edge"] == "pooled"
    assert not set(stacks.config_for(tenant_names("acme"))) & set(ROUTE_KEYS)


async def test_provisioned_routes_the_stack_and_a_later_provisioner_up_keeps_the_route(deps, stacks, ws):
    await stacks.converge(tenant_names("acme"))
    assert config(ws)["routed"] == "false"  # created unrouted: no DNS name leads to it yet
    events = await on_tenant_provisioned(provisioned(), deps)
    assert events == [RouteConfigured(hosts=[f"acme.{BASE}"], route_id="tenant-acme", upstream="hostplane-acme")]
    assert config(ws)["routed"] == "true" and config(ws)["customDomain"] == ""
    await stacks.converge(tenant_names("acme"), TenantOptions(edge="pooled"))  # a redelivered TenantRequested
    assert config(ws)["routed"] == "true"
    assert ws.stacks["hostplane-acme"].deployed["hostplane:routed"] == "true"


async def test_each_writer_keeps_the_others_settings_across_task_restarts(ws):
    """The fake forgets the config file on every `set_all_config`, as a fresh task would."""
    def fresh() -> TenantStacks:
        return TenantStacks(SETTINGS, workspace=ws, backoff_s=0)

    names = tenant_names("acme", base_domain=BASE)
    await fresh().converge(names, TenantOptions(edge="dedicated"))
    await fresh().route(names, custom_domain="shop.example.com", routed=True)
    assert config(ws)["edge"] == "dedicated"  # router-config never chose it, and kept it
    await fresh().converge(names)  # a redelivered 1.1 TenantRequested: no edge given
    assert (config(ws)["edge"], config(ws)["customDomain"], config(ws)["routed"]) == (
        "dedicated", "shop.example.com", "true")
    assert config(ws)["image"] == "reloader:1" and config(ws)["tenantId"] == "acme"


async def test_no_stack_yet_is_transient_and_changes_nothing(deps, ws):
    with pytest.raises(StackNotProvisioned):
        await on_tenant_provisioned(provisioned(), deps)
    assert deps.store.rows == {} and ws.stacks == {}


async def test_a_domain_is_announced_only_once_its_certificate_is_attached(deps, stacks, ws):
    await stacks.converge(tenant_names("acme"))
    await on_tenant_provisioned(provisioned(), deps)
    first = await on_domain_change_requested(domain_change("shop.example.com"), deps)
    assert first[0].hosts == [f"acme.{BASE}"]  # the certificate was only requested by this up
    assert first[0].pending_domain == "shop.example.com"
    assert [(r.name, r.type, r.value) for r in first[0].dns_records] == [
        ("_a1.shop.example.com.", "CNAME", "_b2.acm-validations.aws."),  # what the owner publishes
        ("shop.example.com", "CNAME", "d1.cloudfront.net")]
    assert (config(ws)["customDomain"], config(ws)["customDomainReady"]) == ("shop.example.com", "false")
    assert deps.store.rows["acme"].custom_domain == "shop.example.com"
    assert await deps.attach_pending() == 0 and deps.store.pool.rows == []  # not issued yet: nothing to do
    deps.certificates.issued_for.add("shop.example.com")  # the owner added the validation records
    ups = ws.stacks["hostplane-acme"].ups
    assert await deps.attach_pending() == 1
    assert config(ws)["customDomainReady"] == "true" and ws.stacks["hostplane-acme"].ups == ups + 1
    [row] = deps.store.pool.rows
    assert "RouteConfigured" in str(row) and "shop.example.com" in str(row)
    assert await deps.attach_pending() == 0  # attached: not routed again
    again = await on_domain_change_requested(domain_change("shop.example.com"), deps)
    assert again[0].hosts == [f"acme.{BASE}", "shop.example.com"] and again[0].pending_domain is None
    assert [r.name for r in again[0].dns_records] == ["shop.example.com"]  # the CNAME stays needed


async def test_one_host_never_routes_to_two_tenants(deps, stacks, ws):
    for t in ("acme", "beta"):
        await stacks.converge(tenant_names(t))
    await on_tenant_provisioned(provisioned(domain="shop.example.com"), deps)
    with pytest.raises(HostTaken, match="already routed to tenant acme"):
        await on_tenant_provisioned(provisioned("beta", domain="shop.example.com"), deps)
    assert config(ws, "beta")["routed"] == "false"


async def test_deletion_stops_traffic_first_and_late_events_never_route_again(deps, stacks, ws):
    await stacks.converge(tenant_names("acme"))
    late = provisioned()
    await on_tenant_provisioned(late, deps)
    removed = await on_tenant_deletion_requested(deletion(), deps)
    assert removed == [RouteRemoved(route_id="tenant-acme", hosts=[f"acme.{BASE}"])]
    assert ws.stacks["hostplane-acme"].deployed["hostplane:routed"] == "false"
    ups = ws.stacks["hostplane-acme"].ups
    assert await on_tenant_provisioned(late, deps) == []
    assert ws.stacks["hostplane-acme"].ups == ups and config(ws)["routed"] == "false"


async def test_deleting_a_tenant_without_a_stack_removes_its_route_only(deps, ws):
    assert await on_tenant_deletion_requested(deletion("gamma"), deps) == [
        RouteRemoved(route_id="tenant-gamma", hosts=[f"gamma.{BASE}"])]
    assert ws.stacks == {} and not deps.store.rows["gamma"].live


async def test_the_deprovisioner_sees_traffic_stop_when_router_config_unroutes(deps, stacks, ws):
    from services.resources.aws.adapters import StackEdge

    edge, names = StackEdge(stacks), tenant_names("acme", base_domain=BASE)
    assert not await edge.serves(names)  # no stack: nothing served
    await stacks.converge(names)
    assert not await edge.serves(names)  # provisioned, not routed yet
    await on_tenant_provisioned(provisioned(), deps)
    assert await edge.serves(names)
    await on_tenant_deletion_requested(deletion(), deps)
    assert not await edge.serves(names)


async def test_router_config_on_aws_refuses_to_start_without_its_stack_settings(monkeypatch):
    from pydantic import ValidationError

    from core.settings import Settings
    from services.router_config.service import bootstrap

    for name in [n for n in os.environ if n.startswith("HOSTPLANE_AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOSTPLANE_TARGET", "aws")
    monkeypatch.setenv("HOSTPLANE_CONTROL_DSN", "postgresql://nobody@127.0.0.1:9/none")  # never reached
    with pytest.raises(ValidationError, match="state_url"):
        await bootstrap(Settings(), None)


async def test_the_edge_route_gauge_counts_the_routed_tenants(deps, stacks):
    from core.metrics import EDGE_ROUTES

    for t in ("acme", "beta"):
        await stacks.converge(tenant_names(t))
        await on_tenant_provisioned(provisioned(t), deps)
    assert EDGE_ROUTES._value.get() == 2
    await on_tenant_deletion_requested(deletion("acme"), deps)
    assert EDGE_ROUTES._value.get() == 1
