"""Migrator: TenantChanged → the tenant database migrated in one transaction, then the
release marked live (current.json), then MigrationsApplied.

The previous data model is the one in the ledger's latest row (the database's truth),
never what the event says; the new one comes from `spec.json` inside the release's
verified artifact. In one transaction, as the tenant's own role, under an advisory
lock: re-read the ledger (already applied → nothing to do), apply the plan, record it.
Only after the commit does the pointer move, and the ledger remembers that it moved, so
a replay (or a redelivery after a crash anywhere) neither migrates twice nor moves the
pointer again (a rollback made since stays). A TenantChanged older than the live release
is skipped before its artifact is read (a replay of a pruned release is not a failure).
A failing statement rolls everything back: a PermanentFailure (events.failure), which the
consumer publishes as MigrationFailed with the server's message; the old release keeps
serving.
Connection and other transient errors are raised, so the consumer retries (then DLQ).

`allow_destructive` is honoured only when the API recorded the request it comes from with
it (events.recorded); otherwise the migration runs as if it were not set (a destructive
plan is refused) and `command.unrecorded` is logged.
"""

from __future__ import annotations

import asyncio
import json
import time

import structlog

from artifacts.errors import ArtifactError
from artifacts.releases import release_spec
from spec.problems import InvalidAppSpec
from contracts.envelope import Envelope, Event
from contracts.events_v1 import MigrationsApplied, TenantChanged
from events.failure import PermanentFailure
from services.migrator.adapters import LedgerRow, Migration, MigratorDeps, SchemaSession
from spec.model import Model, relational_model
from spec.plan import check_rollback, plan

log = structlog.get_logger(__name__)


async def on_tenant_changed(envelope: Envelope[TenantChanged], deps: MigratorDeps) -> list[Event]:
    event, tenant = envelope.data, envelope.tenant_id
    if event.allow_destructive and deps.requests is not None and \
            (reason := await deps.requests.unrecorded(envelope, ("allow_destructive",))):
        log.warning("command.unrecorded", field="allow_destructive", reason=reason)
        event = event.model_copy(update={"allow_destructive": False})
    if (live := await _live_version(tenant, deps)) is not None and live > event.version:
        # A replayed (or late) TenantChanged of an older release: the live pointer never
        # moves back, and a pruned release is no failure (docs/replay.md).
        log.info("migration.stale", version=event.version, live_version=live)
        return []
    started = time.perf_counter()
    try:
        applied = await _migrate_and_release(tenant, event, str(envelope.correlation_id), deps)
    except PermanentFailure as failed:  # MigrationFailed names the version
        raise PermanentFailure(failed.step, failed.error, version=event.version) from None
    if applied is None:
        return []
    log.info("migration.applied", version=event.version, migrations=applied,
             ms=round((time.perf_counter() - started) * 1000, 1))
    return [MigrationsApplied(version=event.version, migrations=applied)]


async def _live_version(tenant: str, deps: MigratorDeps) -> int | None:
    pointer = await asyncio.to_thread(deps.store.read_current, tenant)
    return pointer.version if pointer is not None else None


async def _migrate_and_release(tenant: str, event: TenantChanged, correlation_id: str,
                               deps: MigratorDeps) -> list[str] | None:
    """Names of the migrations applied now; None for a stale event (a newer version is in)."""
    try:
        spec = await asyncio.to_thread(release_spec, deps.store, tenant, event.version, event.sha256)
    except (ArtifactError, InvalidAppSpec) as exc:
        raise PermanentFailure("artifact", str(exc)) from None
    if spec.digest() != event.spec_sha256:
        raise PermanentFailure("artifact", f"release {event.version} carries spec {spec.digest()[:12]}, "
                                  f"the event names {event.spec_sha256[:12]}")
    new = relational_model(spec)
    creds = await deps.secrets.read(deps.names(tenant))
    if creds is None:
        raise PermanentFailure("credentials", f"tenant {tenant} has no readable secret {deps.names(tenant).secret}")
    async with deps.schemas.session(creds) as db:
        result = await _migrate(db, event, new)
        if result is not None and result[1]:
            await _release(tenant, event, correlation_id, deps)
            await db.mark_released(event.version)
    return result[0] if result is not None else None


async def _release(tenant: str, event: TenantChanged, correlation_id: str, deps: MigratorDeps) -> None:
    """Point current.json at the release, unless it already does (a replay keeps the generation)."""
    pointer = await asyncio.to_thread(deps.store.read_current, tenant)
    if pointer is None or (pointer.version, pointer.sha256) != (event.version, event.sha256):
        await asyncio.to_thread(deps.store.set_current, tenant, event.version, correlation_id=correlation_id)
        await deps.pointer_moved(tenant)


async def _migrate(db: SchemaSession, event: TenantChanged, new: Model) -> tuple[list[str], bool] | None:
    """One transaction: (names applied now, whether the release is still to be marked live)."""
    async with db.migration() as migration:
        this, latest = await migration.ledger(event.version)
        if latest is not None and latest.version > event.version:  # an old event replayed
            log.warning("migration.stale", version=event.version, database_version=latest.version)
            return None
        if this is not None:
            if this.spec_sha256 != event.spec_sha256:
                raise PermanentFailure("plan", f"version {event.version} was migrated with spec "
                                               f"{this.spec_sha256[:12]}, not {event.spec_sha256[:12]}")
            log.info("migration.already_applied", version=event.version)
            return [], not this.released
        if event.rollback_of is not None:
            await _record_rollback(migration, event, new, latest)
            return [], True
        steps = plan(Model.from_json(latest.model) if latest else None, new)
        if problems := steps.problems(event.allow_destructive):
            raise PermanentFailure("plan", "; ".join(problems))
        await migration.apply(steps.steps)
        await migration.record(event.version, event.spec_sha256, new.to_json(), steps.to_json())
    return ([steps.name(event.version)] if steps.steps else []), True


async def _record_rollback(migration: Migration, event: TenantChanged, target: Model, latest: LedgerRow | None) -> None:
    """A rollback applies no DDL: the old code must fit the schema the database has now
    (checked against the ledger, the database's truth). Its ledger row keeps that schema's
    model, so the next update diffs against the real tables, not the old spec's."""
    current = Model.from_json(latest.model) if latest else None
    if problems := check_rollback(target, current):
        raise PermanentFailure("rollback", f"release {event.rollback_of} cannot serve the current schema; "
                                           "blocked by: " + "; ".join(problems))
    model = json.loads(latest.model) if latest else target.to_json()
    await migration.record(event.version, event.spec_sha256, model, [])
    log.info("migration.rollback_recorded", version=event.version, rollback_of=event.rollback_of)


HANDLERS = {TenantChanged: on_tenant_changed}
