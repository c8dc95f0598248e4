"""Which found names the orphan doctor attributes to a tenant (hostplane.doctor.tenant_of)."""

from __future__ import annotations

import pytest

from contracts.tenant import tenant_names
from hostplane.doctor import FIELDS, tenant_of


@pytest.mark.parametrize("tenant", ["acme", "my-shop", "a1", "x-y-z-2"])
@pytest.mark.parametrize("kind", sorted(FIELDS))
def test_every_name_a_tenant_gets_maps_back_to_it(kind, tenant):
    name = getattr(tenant_names(tenant, prefix="hp"), FIELDS[kind])
    assert tenant_of(kind, name, "hp") == tenant


@pytest.mark.parametrize(("kind", "name"), [
    ("database", "hostplane"), ("database", "postgres"), ("database", "t_"), ("database", "t_admin"),
    ("role", "postgres"), ("role", "t_a"), ("cache_user", "default"), ("cache_user", "t-x"),
    ("cache_keys", "hostplane:"), ("cache_keys", "API:"), ("bucket", "hp-acme-assets"),
    ("bucket", "other-acme-static"), ("secret", "hp/platform/db"), ("secret", "other/tenants/acme"),
    ("route", "catch-all"), ("route", "tenant-"), ("artifacts", ".tmp"), ("artifacts", "UPPER"),
    ("database", "t_a__b"), ("database", "t_ab_"),
])
def test_names_no_tenant_would_get_are_not_attributed(kind, name):
    assert tenant_of(kind, name, "hp") is None
