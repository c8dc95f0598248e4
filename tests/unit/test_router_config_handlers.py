"""Router-config handlers with the local router on a fake table: convergence (twice =
once), ordering guards against late events, the one-host-one-tenant rule, the gauge."""

from __future__ import annotations

import copy
from datetime import timedelta

import pytest

from contracts.events_v1 import RouteConfigured, RouteRemoved
from contracts.failures_v1 import RouteFailed
from events.failure import handled
from services.router_config.adapters import RuntimeNotRegistered, TableRouter
from services.router_config.handlers import on_domain_change_requested, on_tenant_deletion_requested, \
    on_tenant_provisioned
from services.router_config.store import HostTaken
from tests.support.router_fakes import FakeStore, deletion, domain_change, provisioned


def live_hosts(deps) -> dict[str, list[str]]:
    """What the route resolver would answer: every live row's hosts."""
    return {r.route.route_id: list(r.route.hosts) for r in deps.store.rows.values() if r.live}


@pytest.fixture
def deps() -> TableRouter:
    return TableRouter(store=FakeStore({"acme": 10001, "beta": 10002}))  # type: ignore[arg-type]


async def test_provisioned_twice_routes_once(deps):
    env = provisioned(domain="shop.example.com")
    first = await on_tenant_provisioned(env, deps)
    assert first == [RouteConfigured(hosts=["acme.localhost", "shop.example.com"], route_id="tenant-acme",
                                     upstream="127.0.0.1:10001")]
    state = copy.deepcopy(deps.store.rows)
    assert await on_tenant_provisioned(env, deps) == first
    assert deps.store.rows == state and deps.store.writes == 1


async def test_no_runtime_port_yet_is_transient_and_changes_nothing(deps):
    with pytest.raises(RuntimeNotRegistered):
        await on_tenant_provisioned(provisioned("gamma"), deps)
    assert deps.store.rows == {}


async def test_one_host_never_routes_to_two_tenants(deps):
    await on_tenant_provisioned(provisioned(domain="shop.example.com"), deps)
    with pytest.raises(HostTaken, match="already routed to tenant acme"):
        await on_tenant_provisioned(provisioned("beta", domain="shop.example.com"), deps)
    assert "beta" not in deps.store.rows and list(live_hosts(deps)) == ["tenant-acme"]
    # as its consumer runs it: RouteFailed, at once (redelivery would not free the host)
    assert await handled("router-config", on_tenant_provisioned, provisioned("beta", domain="shop.example.com"),
                         deps) == [RouteFailed(stage="hosts", error="host shop.example.com is already routed to "
                                               "tenant acme", retryable=False,
                                               hosts=["beta.localhost", "shop.example.com"])]


async def test_deletion_twice_removes_once_and_older_events_never_resurrect(deps):
    late = provisioned()
    await on_tenant_provisioned(late, deps)
    gone = deletion()
    assert await on_tenant_deletion_requested(gone, deps) == [RouteRemoved(route_id="tenant-acme",
                                                                           hosts=["acme.localhost"])]
    assert await on_tenant_deletion_requested(gone, deps) == [RouteRemoved(route_id="tenant-acme",
                                                                           hosts=["acme.localhost"])]
    assert live_hosts(deps) == {}
    assert await on_tenant_provisioned(late, deps) == []
    assert await on_domain_change_requested(domain_change("x.example.com").model_copy(
        update={"occurred_at": gone.occurred_at - timedelta(seconds=1)}), deps) == []
    older_deletion = gone.model_copy(update={"occurred_at": gone.occurred_at - timedelta(seconds=5)})
    assert await on_tenant_deletion_requested(older_deletion, deps) == []
    assert live_hosts(deps) == {}
    # a re-created tenant's events are newer: routed again, without the old lifetime's domain
    assert (await on_tenant_provisioned(provisioned(), deps))[0].hosts == ["acme.localhost"]


async def test_deleting_a_tenant_that_never_had_a_route_leaves_a_tombstone(deps):
    gone = deletion("beta")
    late = provisioned("beta").model_copy(update={"occurred_at": gone.occurred_at - timedelta(seconds=1)})
    await on_tenant_deletion_requested(gone, deps)
    assert await on_tenant_provisioned(late, deps) == [] and live_hosts(deps) == {}


async def test_a_domain_change_wins_over_a_redelivered_provisioned_and_over_older_changes(deps):
    first = domain_change("old.example.com")
    newer = domain_change("new.example.com")
    await on_tenant_provisioned(provisioned(domain="created.example.com"), deps)
    assert (await on_domain_change_requested(newer, deps))[0].hosts == ["acme.localhost", "new.example.com"]
    assert (await on_domain_change_requested(first, deps))[0].hosts == ["acme.localhost", "new.example.com"]
    assert (await on_tenant_provisioned(provisioned(domain="created.example.com"), deps))[0].hosts == [
        "acme.localhost", "new.example.com"]
    removed = await on_domain_change_requested(domain_change(None), deps)
    assert removed[0].hosts == ["acme.localhost"] and live_hosts(deps) == {"tenant-acme": ["acme.localhost"]}


async def test_a_domain_change_before_provisioned_arrives_is_kept(deps):
    await on_domain_change_requested(domain_change("early.example.com"), deps)
    out = await on_tenant_provisioned(provisioned(), deps)
    assert out[0].hosts == ["acme.localhost", "early.example.com"]


async def test_the_edge_route_gauge_counts_the_live_routes(deps):
    from core.metrics import EDGE_ROUTES

    gauge = lambda: EDGE_ROUTES._value.get()  # noqa: E731
    await on_tenant_provisioned(provisioned(), deps)
    await on_tenant_provisioned(provisioned("beta"), deps)
    assert gauge() == 2
    await on_tenant_deletion_requested(deletion("beta"), deps)
    assert gauge() == 1


# A re-created tenant: replaying the first incarnation's deletion (or any older deletion)
# never takes the new incarnation's route away.
async def test_a_replayed_deletion_of_the_first_incarnation_leaves_the_second_routed(deps):
    first_create, first_delete = provisioned(), deletion()
    await on_tenant_provisioned(first_create, deps)
    await on_tenant_deletion_requested(first_delete, deps)
    assert live_hosts(deps) == {}
    second_create = provisioned()  # the tenant created again, after the deletion
    await on_tenant_provisioned(second_create, deps)
    assert live_hosts(deps) == {"tenant-acme": ["acme.localhost"]}
    state = copy.deepcopy(deps.store.rows)

    for replayed in (first_delete.as_replay(), first_delete):
        assert await on_tenant_deletion_requested(replayed, deps) == []
    assert await on_tenant_provisioned(first_create.as_replay(), deps)  # re-converges to the same route
    assert deps.store.rows == state
    assert live_hosts(deps) == {"tenant-acme": ["acme.localhost"]}

    current_delete = deletion()  # the second incarnation's own deletion still works
    await on_tenant_deletion_requested(current_delete, deps)
    assert live_hosts(deps) == {} and not deps.store.rows["acme"].live


async def test_a_deletion_older_than_an_applied_domain_change_is_stale(deps):
    old_delete = deletion()  # of an earlier incarnation: older than anything applied since
    await on_tenant_provisioned(provisioned(), deps)
    await on_domain_change_requested(domain_change("shop.example.com"), deps)
    assert await on_tenant_deletion_requested(old_delete, deps) == []
    assert live_hosts(deps) == {"tenant-acme": ["acme.localhost", "shop.example.com"]}
