"""Provisioner: TenantRequested → the tenant's own slice of the shared infrastructure.

Converges, in order: database + role, cache ACL user, secret (the credentials of both),
static bucket, runtime registration; then emits TenantProvisioned (names only).
IdleAfterChangeRequested → the runtime registration's idle period, IdleAfterChanged.
Every step is an ensure (safe twice, safe after a crash) and is recorded as it starts
and ends (services.resources.records), so a re-delivery after a crash skips through
the finished steps as no-ops and resumes at the one that did not finish.

Passwords: the secret is read first; what it holds is the truth, and the database and
cache steps keep (or restore) exactly those passwords. Only a step with no stored
password generates one — nothing else could be using it, since the secret is the only
place passwords live. An adapter's permanent error (PermanentError) ends the run as a
PermanentFailure naming the step (events.failure: the consumer publishes
ProvisioningFailed); anything else is raised so the consumer retries.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog

from contracts.envelope import Envelope, Event
from contracts.events_v1 import IdleAfterChanged, IdleAfterChangeRequested, TenantProvisioned, TenantRequested
from contracts.tenant import TenantNames
from events.failure import PermanentFailure
from events.recorded import SUPERSEDED_BY
from services.resources.base import Ensured, PermanentError, TenantOptions, scrub
from services.resources.secret import TenantCredentials
from services.resources.wiring import TenantResources

log = structlog.get_logger(__name__)

STEPS = ("database", "cache", "secret", "bucket", "runtime")
T = TypeVar("T")


class Steps:
    """Runs one step of one tenant with its record and its log line."""

    def __init__(self, deps: TenantResources, tenant_id: str) -> None:
        self.deps, self.tenant_id = deps, tenant_id
        self.secrets: list[Any] = []  # values to scrub from any error text

    async def run(self, step: str, work: Callable[[], Awaitable[Ensured[T]]]) -> Ensured[T]:
        records = self.deps.records
        await records.step_started(self.tenant_id, step)
        try:
            result = await work()
        except PermanentError as exc:
            error = scrub(str(exc), self.secrets) or type(exc).__name__
            await records.step_finished(self.tenant_id, step, None, error)
            raise PermanentFailure(step, error) from None
        except Exception as exc:  # transient: recorded, then retried by the consumer
            await records.step_finished(self.tenant_id, step, None, f"retrying after {type(exc).__name__}")
            raise
        await records.step_finished(self.tenant_id, step, result.outcome.value)
        log.info("provisioning.step", step=step, outcome=result.outcome.value)
        return result


async def on_tenant_requested(envelope: Envelope[TenantRequested], deps: TenantResources) -> list[Event]:
    tenant, request = envelope.tenant_id, envelope.data
    async with deps.records.holding(tenant):
        if not await deps.records.start_provisioning(tenant, envelope.occurred_at, envelope.correlation_id):
            log.warning("provisioning.stale_request", reason="the tenant was deleted after this request")
            return []
        names = deps.names(tenant)
        try:
            options = TenantOptions(edge=request.edge, idle_after_s=request.idle_after_s)
            secret_arn = await _converge(names, options, deps)
        except PermanentFailure as failed:  # recorded here; the consumer publishes ProvisioningFailed
            await deps.records.finish(tenant, "failed", failed.step, failed.error)
            raise
        await deps.records.finish(tenant, "provisioned")
    log.info("provisioning.done")
    return [TenantProvisioned(
        database=names.database, db_role=names.db_role, cache_user=names.cache_user,
        cache_prefix=names.cache_prefix, bucket=names.bucket, secret_name=names.secret,
        secret_arn=secret_arn, runtime_service=names.runtime_service, spec_ref=request.spec_ref,
        spec_sha256=request.spec_sha256, custom_domain=request.custom_domain, static_ref=request.static_ref,
    )]


async def on_idle_after_change_requested(envelope: Envelope[IdleAfterChangeRequested],
                                         deps: TenantResources) -> list[Event]:
    """Write the tenant's new idle period into its runtime registration; IdleAfterChanged.
    Live deliveries may come in any order: one a newer idle change replaced changes nothing
    (the newer one is, or will be, written). A tenant without a registered runtime (deleted,
    never provisioned) fails for good, nothing written."""
    tenant, idle_after_s = envelope.tenant_id, envelope.data.idle_after_s
    async with deps.records.holding(tenant):
        if deps.recorded is not None and (newer := await deps.recorded.superseded(envelope, SUPERSEDED_BY["idle"])):
            log.info("idle_after.superseded", by=newer, reason="a newer request replaced this idle period")
            return []
        try:
            result = await deps.runtime.set_idle_after(deps.names(tenant), idle_after_s)
        except PermanentError as exc:
            raise PermanentFailure("runtime", str(exc)) from None
    log.info("idle_after.changed", idle_after_s=idle_after_s, outcome=result.outcome.value)
    return [IdleAfterChanged(idle_after_s=idle_after_s)]


async def _converge(names: TenantNames, options: TenantOptions, deps: TenantResources) -> str | None:
    """Every step in order; returns the secret's ARN. `options` shape the steps whose
    infrastructure the tenant chose (on AWS the bucket and runtime are its stack)."""
    steps = Steps(deps, names.tenant_id)
    try:
        known = await deps.secrets.read(names)
    except PermanentError as exc:
        raise PermanentFailure("secret", str(exc)) from None
    if known is not None:
        steps.secrets += [known.DB_PASSWORD, known.CACHE_PASSWORD]
    db = await steps.run("database", lambda: deps.database.ensure(names, known and known.DB_PASSWORD))
    cache = await steps.run("cache", lambda: deps.cache.ensure(names, known and known.CACHE_PASSWORD))
    steps.secrets += [db.value, cache.value]
    creds = TenantCredentials.build(names, deps.endpoints, db.value, cache.value)
    secret = await steps.run("secret", lambda: deps.secrets.ensure(names, creds))
    await steps.run("bucket", lambda: deps.bucket.ensure(names, options=options))
    await steps.run("runtime", lambda: deps.runtime.register(names, env_ref=names.secret, options=options))
    return secret.value


HANDLERS = {TenantRequested: on_tenant_requested, IdleAfterChangeRequested: on_idle_after_change_requested}
