"""Router-config and a re-created tenant: replaying the first incarnation's deletion (or
any older deletion) never takes the new incarnation's route away."""

from __future__ import annotations

import copy

from services.router_config.handlers import on_domain_change_requested, on_tenant_deletion_requested, \
    on_tenant_provisioned
from tests.unit.test_router_config_handlers import deletion, deps, domain_change, provisioned  # noqa: F401


async def test_a_replayed_deletion_of_the_first_incarnation_leaves_the_second_routed(deps):  # noqa: F811
    first_create, first_delete = provisioned(), deletion()
    await on_tenant_provisioned(first_create, deps)
    await on_tenant_deletion_requested(first_delete, deps)
    assert deps.edge.hosts() == {}
    second_create = provisioned()  # the tenant created again, after the deletion
    await on_tenant_provisioned(second_create, deps)
    assert deps.edge.hosts() == {"tenant-acme": ["acme.localhost"]}
    state = (copy.deepcopy(deps.store.rows), deps.edge.writes)

    for replayed in (first_delete.as_replay(), first_delete):
        assert await on_tenant_deletion_requested(replayed, deps) == []
    assert await on_tenant_provisioned(first_create.as_replay(), deps)  # re-converges to the same route
    assert (deps.store.rows, deps.edge.writes) == state
    assert deps.edge.hosts() == {"tenant-acme": ["acme.localhost"]}

    current_delete = deletion()  # the second incarnation's own deletion still works
    await on_tenant_deletion_requested(current_delete, deps)
    assert deps.edge.hosts() == {} and not deps.store.rows["acme"].live


async def test_a_deletion_older_than_an_applied_domain_change_is_stale(deps):  # noqa: F811
    old_delete = deletion()  # of an earlier incarnation: older than anything applied since
    await on_tenant_provisioned(provisioned(), deps)
    await on_domain_change_requested(domain_change("shop.example.com"), deps)
    assert await on_tenant_deletion_requested(old_delete, deps) == []
    assert deps.edge.hosts() == {"tenant-acme": ["acme.localhost", "shop.example.com"]}
