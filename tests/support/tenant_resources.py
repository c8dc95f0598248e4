"""Tenants on the real servers, for the integration tests: `new_tenant()` is a fresh name,
`remove_all` takes away whatever a test left of one (the `tenant` and `other` fixtures in
tests/integration/shared/conftest.py, and tests that name their own tenants, use them)."""

from __future__ import annotations

import contextlib
import uuid

from services.deprovisioner.handlers import teardown
from services.resources.wiring import TenantResources


def new_tenant() -> str:
    return f"it-{uuid.uuid4().hex[:10]}"


async def remove_all(res: TenantResources, tenant: str) -> None:
    """Best-effort cleanup, whatever a test left behind."""
    names = res.names(tenant)
    for _, remove in teardown(names, res):
        with contextlib.suppress(Exception):
            await remove()
    await res.records.pool.execute("DELETE FROM provisioned_tenants WHERE tenant_id = $1", tenant)
