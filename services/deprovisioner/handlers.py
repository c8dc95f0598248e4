"""Deprovisioner: TenantDeletionRequested → nothing of the tenant is left.

Traffic stops first: router-config removes the edge route on the same event, and the
teardown waits (ROUTE_WAIT_S, then a retry by redelivery) until the edge no longer
serves it. Then it removes, in order: the runtime registration (the app stops using its
credentials), the database (new logins refused, open sessions terminated), the role, the cache ACL
user (its clients are disconnected) and then every `<tenant>:*` key, the bucket with
every object version, the secret (no recovery window), the artifacts folder. Each removal
is convergent: a half-created or already-deleted tenant is fine.

Then it looks again for anything of the tenant (the per-tenant orphan check) and emits
TenantDeprovisioned with what it removed, or DeprovisioningFailed with the first
failing step and what remains. A permanent error in one step does not stop the others;
a transient one is raised so the consumer retries the whole (convergent) teardown.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import structlog

from contracts.envelope import Envelope, Event
from contracts.events_v1 import TenantDeletionRequested, TenantDeprovisioned
from contracts.failures_v1 import DeprovisioningFailed
from contracts.tenant import TenantNames
from events.failure import PermanentFailure
from services.resources.base import PermanentError
from services.resources.wiring import TenantResources

log = structlog.get_logger(__name__)

Removal = Callable[[], Awaitable[list[str]]]
ROUTE_WAIT_S = 20.0


class RouteStillServed(RuntimeError):
    """Transient: the edge still routes the tenant; the message is redelivered."""


async def traffic_stopped(names: TenantNames, deps: TenantResources) -> None:
    """Wait until the edge stops serving the tenant (router-config removes the route)."""
    if deps.edge is None:
        return
    deadline = time.monotonic() + ROUTE_WAIT_S
    while await deps.edge.serves(names):
        if time.monotonic() > deadline:
            raise RouteStillServed(f"the edge still routes {names.route_id} after {ROUTE_WAIT_S:.0f} s; "
                                   "router-config removes it (is it running?)")
        await asyncio.sleep(0.1)


def teardown(names: TenantNames, deps: TenantResources) -> list[tuple[str, Removal]]:
    return [
        ("runtime", lambda: deps.runtime.deregister(names)),
        ("database", lambda: deps.database.remove_database(names)),
        ("role", lambda: deps.database.remove_role(names)),
        ("cache_user", lambda: deps.cache.remove_user(names)),
        ("cache_keys", lambda: deps.cache.remove_keys(names)),
        ("bucket", lambda: deps.bucket.remove(names)),
        ("secret", lambda: deps.secrets.remove(names)),
        ("artifacts", lambda: deps.artifacts.remove(names)),
    ]


async def remaining(names: TenantNames, deps: TenantResources) -> list[str]:
    """Whatever of the tenant still exists, as ResourceRefs."""
    found: list[str] = []
    for adapter in (deps.runtime, deps.database, deps.cache, deps.bucket, deps.secrets, deps.artifacts):
        found += await adapter.existing(names)
    return found


async def on_tenant_deletion_requested(envelope: Envelope[TenantDeletionRequested],
                                       deps: TenantResources) -> list[Event]:
    tenant = envelope.tenant_id
    async with deps.records.holding(tenant):
        if not await deps.records.start_deprovisioning(tenant, envelope.occurred_at, envelope.correlation_id):
            log.warning("deprovisioning.stale_request", reason="the tenant was re-created after this request")
            return []
        names = deps.names(tenant)
        await traffic_stopped(names, deps)
        removed: list[str] = []
        failures: list[tuple[str, str]] = []
        for step, remove in teardown(names, deps):
            try:
                gone = await remove()
            except PermanentError as exc:
                failures.append((step, str(exc) or type(exc).__name__))
                log.warning("deprovisioning.step_failed", step=step, error=failures[-1][1])
                continue
            removed += gone
            log.info("deprovisioning.step", step=step, removed=gone)
        left = await remaining(names, deps)
        if failures or left:
            stage, error = failures[0] if failures else ("verify", f"still present after teardown: {', '.join(left)}")
            await deps.records.finish(tenant, "deprovisioning", stage, error)
            if failures:  # the consumer publishes DeprovisioningFailed (events.failure)
                raise PermanentFailure(stage, error, remaining=left)
            # Not permanent: something came back while tearing down; deleting again may succeed.
            return [DeprovisioningFailed(stage=stage, error=error, retryable=True, remaining=left)]
        await deps.records.finish(tenant, "deprovisioned")
    log.info("deprovisioning.done", removed=len(removed))
    return [TenantDeprovisioned(removed=removed)]


HANDLERS = {TenantDeletionRequested: on_tenant_deletion_requested}
