"""Router-config handlers with fake adapters: convergence (twice = once), ordering guards
against late events, the one-host-one-tenant rule, and the fall-back to a full re-sync."""

from __future__ import annotations

import copy
from datetime import timedelta

import pytest

from contracts.envelope import Envelope
from contracts.events_v1 import DomainChangeRequested, RouteConfigured, RouteRemoved, TenantDeletionRequested, \
    TenantProvisioned
from hostplane.local.edge import CATCH_ALL_ID
from services.router_config.caddy import EdgeDrifted
from services.router_config.handlers import HostTaken, RouterDeps, RuntimeNotRegistered, on_domain_change_requested, \
    on_tenant_deletion_requested, on_tenant_provisioned
from services.router_config.routes import catch_all
from services.router_config.store import RouteRow
from tests.unit.test_contracts import sample

ORIGIN = "127.0.0.1:4580"


class FakeStore:
    def __init__(self, ports: dict[str, int]) -> None:
        self.rows: dict[str, RouteRow] = {}
        self.ports = ports

    async def get(self, tenant_id):
        return self.rows.get(tenant_id)

    async def app_port(self, tenant_id):
        return self.ports.get(tenant_id)

    async def host_owner(self, host, tenant_id):
        return next((t for t, r in self.rows.items() if r.live and t != tenant_id and host in r.route.hosts), None)

    async def save(self, route, custom_domain, domain_at):
        self.rows[route.tenant_id] = RouteRow(route, custom_domain, domain_at, None)

    async def tombstone(self, route, at):
        row = self.rows.get(route.tenant_id)
        if row is None or row.deleted_at is None or row.deleted_at < at:
            base = row or RouteRow(route, None, None, None)
            self.rows[route.tenant_id] = RouteRow(base.route, base.custom_domain, base.domain_at, at)

    async def live_routes(self):
        return [r.route for r in self.rows.values() if r.live]


class FakeEdge:
    """Caddy's edge server as a list; counts writes; can lose its config."""

    def __init__(self) -> None:
        self.list: list[dict] | None = [catch_all()]
        self.writes = 0

    async def route(self, route_id):
        return next((copy.deepcopy(r) for r in self.list or [] if r.get("@id") == route_id), None)

    async def routes(self):
        return copy.deepcopy(self.list)

    async def put(self, desired):
        live = await self.route(desired["@id"])
        if live == desired:
            return False
        if self.list is None or CATCH_ALL_ID not in [r.get("@id") for r in self.list]:
            raise EdgeDrifted("no edge server")
        self.writes += 1
        ids = [r.get("@id") for r in self.list]
        if live is not None:
            self.list[ids.index(desired["@id"])] = copy.deepcopy(desired)
        else:
            self.list.insert(ids.index(CATCH_ALL_ID), copy.deepcopy(desired))
        return True

    async def delete(self, route_id):
        if await self.route(route_id) is None:
            return False
        self.writes += 1
        self.list = [r for r in self.list if r.get("@id") != route_id]
        return True

    async def load(self, routes):
        self.writes += 1
        self.list = copy.deepcopy(routes)

    async def aclose(self):
        pass

    def hosts(self) -> dict[str, list[str]]:
        return {r["@id"]: r["match"][0]["host"] for r in self.list or [] if r.get("@id") != CATCH_ALL_ID}


@pytest.fixture
def deps() -> RouterDeps:
    return RouterDeps(store=FakeStore({"acme": 10001, "beta": 10002}), edge=FakeEdge(), origin=ORIGIN)  # type: ignore[arg-type]


def provisioned(tenant="acme", domain=None) -> Envelope:
    return Envelope.new(sample(TenantProvisioned).model_copy(update={"custom_domain": domain}), tenant_id=tenant,
                        producer="provisioner")


def domain_change(domain, tenant="acme") -> Envelope:
    return Envelope.new(DomainChangeRequested(custom_domain=domain), tenant_id=tenant, producer="api")


def deletion(tenant="acme") -> Envelope:
    return Envelope.new(TenantDeletionRequested(), tenant_id=tenant, producer="api")


async def test_provisioned_twice_routes_once(deps):
    env = provisioned(domain="shop.example.com")
    first = await on_tenant_provisioned(env, deps)
    assert first == [RouteConfigured(hosts=["acme.localhost", "shop.example.com"], route_id="tenant-acme",
                                     upstream="127.0.0.1:10001")]
    state = (copy.deepcopy(deps.store.rows), deps.edge.writes, await deps.edge.routes())
    assert await on_tenant_provisioned(env, deps) == first
    assert (deps.store.rows, deps.edge.writes, await deps.edge.routes()) == state
    assert state[1] == 1


async def test_no_runtime_port_yet_is_transient_and_changes_nothing(deps):
    with pytest.raises(RuntimeNotRegistered):
        await on_tenant_provisioned(provisioned("gamma"), deps)
    assert deps.store.rows == {} and deps.edge.writes == 0


async def test_one_host_never_routes_to_two_tenants(deps):
    await on_tenant_provisioned(provisioned(domain="shop.example.com"), deps)
    with pytest.raises(HostTaken, match="already routed to tenant acme"):
        await on_tenant_provisioned(provisioned("beta", domain="shop.example.com"), deps)
    assert "beta" not in deps.store.rows and list(deps.edge.hosts()) == ["tenant-acme"]


async def test_deletion_twice_removes_once_and_older_events_never_resurrect(deps):
    late = provisioned()
    await on_tenant_provisioned(late, deps)
    gone = deletion()
    assert await on_tenant_deletion_requested(gone, deps) == [RouteRemoved(route_id="tenant-acme",
                                                                           hosts=["acme.localhost"])]
    writes = deps.edge.writes
    assert await on_tenant_deletion_requested(gone, deps) == [RouteRemoved(route_id="tenant-acme",
                                                                           hosts=["acme.localhost"])]
    assert deps.edge.writes == writes and deps.edge.hosts() == {}
    assert await on_tenant_provisioned(late, deps) == []
    assert await on_domain_change_requested(domain_change("x.example.com").model_copy(
        update={"occurred_at": gone.occurred_at - timedelta(seconds=1)}), deps) == []
    older_deletion = gone.model_copy(update={"occurred_at": gone.occurred_at - timedelta(seconds=5)})
    assert await on_tenant_deletion_requested(older_deletion, deps) == []
    assert deps.edge.hosts() == {}
    # a re-created tenant's events are newer: routed again, without the old lifetime's domain
    assert (await on_tenant_provisioned(provisioned(), deps))[0].hosts == ["acme.localhost"]


async def test_deleting_a_tenant_that_never_had_a_route_leaves_a_tombstone(deps):
    gone = deletion("beta")
    late = provisioned("beta").model_copy(update={"occurred_at": gone.occurred_at - timedelta(seconds=1)})
    await on_tenant_deletion_requested(gone, deps)
    assert await on_tenant_provisioned(late, deps) == [] and deps.edge.hosts() == {}


async def test_a_domain_change_wins_over_a_redelivered_provisioned_and_over_older_changes(deps):
    first = domain_change("old.example.com")
    newer = domain_change("new.example.com")
    await on_tenant_provisioned(provisioned(domain="created.example.com"), deps)
    assert (await on_domain_change_requested(newer, deps))[0].hosts == ["acme.localhost", "new.example.com"]
    assert (await on_domain_change_requested(first, deps))[0].hosts == ["acme.localhost", "new.example.com"]
    assert (await on_tenant_provisioned(provisioned(domain="created.example.com"), deps))[0].hosts == [
        "acme.localhost", "new.example.com"]
    removed = await on_domain_change_requested(domain_change(None), deps)
    assert removed[0].hosts == ["acme.localhost"] and deps.edge.hosts() == {"tenant-acme": ["acme.localhost"]}


async def test_a_domain_change_before_provisioned_arrives_is_kept(deps):
    await on_domain_change_requested(domain_change("early.example.com"), deps)
    out = await on_tenant_provisioned(provisioned(), deps)
    assert out[0].hosts == ["acme.localhost", "early.example.com"]


async def test_caddy_without_the_edge_server_gets_every_route_back(deps):
    await on_tenant_provisioned(provisioned("beta"), deps)
    deps.edge.list = None  # Caddy restarted with no config
    await on_tenant_provisioned(provisioned(), deps)
    assert deps.edge.hosts() == {"tenant-acme": ["acme.localhost"], "tenant-beta": ["beta.localhost"]}
    assert deps.edge.list[-1]["@id"] == CATCH_ALL_ID


async def test_the_edge_route_gauge_follows_what_caddy_holds(deps):
    from core.metrics import EDGE_ROUTES
    from services.router_config.handlers import resync

    gauge = lambda: EDGE_ROUTES._value.get()  # noqa: E731
    await on_tenant_provisioned(provisioned(), deps)
    await on_tenant_provisioned(provisioned("beta"), deps)
    assert gauge() == 2
    await on_tenant_deletion_requested(deletion("beta"), deps)
    assert gauge() == 1
    deps.edge.list = None  # Caddy restarted empty: the resync reloads the one live route
    assert await resync(deps) and gauge() == 1
    deps.edge.list = [catch_all()]
    EDGE_ROUTES.set(99)
    assert await resync(deps) and gauge() == 1
    assert not await resync(deps) and gauge() == 1
