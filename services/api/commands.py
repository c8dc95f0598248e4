"""What the API changes: create, update, delete, domain, idle-period and rollback requests.

Every input is validated before anything is written; then, in one transaction under the
tenant's lock, the desired state, the request (its generation and correlation id), the
status row and the event go in together (the event through the outbox), so a refused
request leaves nothing and an accepted one cannot lose its event.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog

from artifacts import inputs
from contracts.app_spec import AppSpec, spec_ref
from spec.load import load_app_spec
from spec.problems import InvalidAppSpec
from contracts.envelope import Envelope, Event
from contracts.events_v1 import AppUpdateRequested, DomainChangeRequested, IdleAfterChangeRequested, \
    RollbackRequested, TenantDeletionRequested, TenantRequested
from contracts.tenant import EdgeMode
from events.outbox import add_to_outbox
from services.api import releases, store
from services.api.projection import Kind, Status, begin
from spec.model import relational_model
from spec.plan import check_rollback, check_update

log = structlog.get_logger(__name__)
PRODUCER = "api"


class RequestRefused(Exception):
    """A request the API will not carry out: HTTP status and a message that says what to fix."""

    def __init__(self, status: int, message: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors or []


@dataclass(frozen=True)
class Accepted:
    tenant_id: str
    kind: Kind
    generation: int
    correlation_id: uuid.UUID
    changed: bool = True


def _sha(known: list[dict[str, Any]], version: int) -> str | None:
    return next((r["sha256"] for r in known if r["version"] == version), None)


def _blob_ref(blob: tuple[str, bytes] | None) -> str | None:
    """Reference of a zip stored with `inputs.store_source` (sources and static bundles)."""
    return f"source:sha256:{blob[0]}" if blob else None


class TenantCommands:
    def __init__(self, pool: Any) -> None:
        self.pool = pool

    async def create(self, name: str, spec: AppSpec, domain: str | None, actor: str | None,
                     static: tuple[str, bytes] | None = None, edge: EdgeMode | None = None,
                     idle_after_s: int | None = None) -> Accepted:
        """`static` = (sha256, zip) of the spec's static folder; `edge` the tenant's edge on
        AWS (None: the installation's default). A re-creation after deletion takes what
        this request says, the domain and edge included, never the deleted tenant's."""
        digest = spec.digest()
        async with self.pool.acquire() as conn, conn.transaction():
            await store.lock_tenant(conn, name)
            row = await store.tenant_row(conn, name)
            if row is not None and row["deleted_at"] is None:
                raise RequestRefused(409, f"tenant {name!r} already exists; update its app with "
                                   f"PUT /v1/tenants/{name}/app or choose another name")
            previous = await store.load_status(conn, name) if row is not None else None
            if previous is not None and previous.state == "failed":
                raise RequestRefused(409, f"the deletion of tenant {name!r} failed; delete it again, then create it")
            if previous is not None and previous.state != "deleted":
                raise RequestRefused(409, f"tenant {name!r} is still being deleted; create it again once "
                                   "its state is 'deleted'")
            if domain and (owner := await store.domain_owner(conn, domain, name)):
                raise RequestRefused(409, f"custom domain {domain!r} already belongs to tenant {owner!r}")
            generation = (row["generation"] if row else 0) + 1
            incarnation = uuid.uuid4()  # a new tenant, even under an old name
            await inputs.store_spec(conn, digest, spec.canonical_json())
            try:
                await conn.execute(
                    """
                    INSERT INTO tenants (tenant_id, spec_sha256, custom_domain, generation, edge, incarnation,
                                         idle_after_s)
                    VALUES ($1, $2, $3, $4, $5, $6, $7)
                    ON CONFLICT (tenant_id) DO UPDATE SET spec_sha256 = $2, custom_domain = $3,
                        generation = $4, edge = $5, incarnation = $6, idle_after_s = $7, runtime = NULL,
                        runtime_at = NULL, runtime_failure = NULL, created_at = now(), updated_at = now(),
                        deleted_at = NULL
                    """,
                    name, digest, domain, generation, edge, incarnation, idle_after_s,
                )
            except asyncpg.UniqueViolationError:  # a concurrent create claimed the domain
                raise RequestRefused(409, f"custom domain {domain!r} already belongs to another tenant") from None
            if static is not None:
                await inputs.store_source(conn, *static)
            await conn.execute("UPDATE tenants SET static_sha256 = $2 WHERE tenant_id = $1", name,
                               static[0] if static else None)
            event = TenantRequested(spec_ref=spec_ref(digest), spec_sha256=digest, custom_domain=domain,
                                    requested_by=actor, static_ref=_blob_ref(static), edge=edge,
                                    idle_after_s=idle_after_s)
            return await self._request(conn, name, generation, "create", event, None, digest, domain, actor)

    async def update(self, name: str, spec: AppSpec, allow_destructive: bool, actor: str | None,
                     source: tuple[str, bytes] | None = None, static: tuple[str, bytes] | None = None) -> Accepted:
        """`source` = (sha256, zip) of an edited source tree whose spec.json is `spec`;
        `static` = (sha256, zip) of the spec's static folder (a new upload is a change)."""
        digest = spec.digest()
        async with self.pool.acquire() as conn, conn.transaction():
            await store.lock_tenant(conn, name)
            row, status = await self._live(conn, name)
            if not status.facts.provisioned:
                raise RequestRefused(409, f"tenant {name!r} is not provisioned yet (state {status.state}); "
                                   "update it once it is building or ready")
            if digest == row["spec_sha256"] and status.state != "failed" and source is None \
                    and (static is None or static[0] == row["static_sha256"]):
                return Accepted(name, status.kind, status.generation, await self._correlation(conn, name, status),
                                changed=False)
            if problems := await self._migration_problems(conn, row, spec, allow_destructive):
                raise RequestRefused(422, "the app cannot be migrated to this spec: " + "; ".join(problems),
                              [{"path": "app." + p.split(": ", 1)[0], "message": p.split(": ", 1)[1]}
                               for p in problems])
            generation = row["generation"] + 1
            await inputs.store_spec(conn, digest, spec.canonical_json())
            await conn.execute(
                "UPDATE tenants SET spec_sha256 = $2, generation = $3, updated_at = now() WHERE tenant_id = $1",
                name, digest, generation,
            )
            for blob in (source, static):
                if blob is not None:
                    await inputs.store_source(conn, *blob)
            if static is not None:
                await conn.execute("UPDATE tenants SET static_sha256 = $2 WHERE tenant_id = $1", name, static[0])
            event = AppUpdateRequested(spec_ref=spec_ref(digest), spec_sha256=digest,
                                       allow_destructive=allow_destructive, requested_by=actor,
                                       source_ref=_blob_ref(source), static_ref=_blob_ref(static))
            return await self._request(conn, name, generation, "update", event, status, digest, None, actor)

    async def delete(self, name: str, actor: str | None) -> Accepted:
        async with self.pool.acquire() as conn, conn.transaction():
            await store.lock_tenant(conn, name)
            row = await store.tenant_row(conn, name)
            if row is None:
                raise RequestRefused(404, f"no tenant named {name!r}")
            status = await store.load_status(conn, name)
            if row["deleted_at"] is not None and status.state == "deleted":
                raise RequestRefused(404, f"tenant {name!r} was already deleted")
            if row["deleted_at"] is not None and status.state != "failed":  # in progress: same request
                return Accepted(name, "delete", status.generation,
                                await self._correlation(conn, name, status), changed=False)
            generation = row["generation"] + 1
            await conn.execute(
                "UPDATE tenants SET generation = $2, deleted_at = now(), updated_at = now() WHERE tenant_id = $1",
                name, generation,
            )
            event = TenantDeletionRequested(requested_by=actor)
            return await self._request(conn, name, generation, "delete", event, status, None, None, actor)

    async def _unchanged(self, conn, name: str, status) -> Accepted:
        """The setting already has the asked value: nothing recorded, the current request answers."""
        return Accepted(name, status.kind, status.generation, await self._correlation(conn, name, status),
                        changed=False)

    @staticmethod
    def _settled_or_busy(name: str, status, what: str) -> None:
        if not status.facts.provisioned or not status.settled:
            raise RequestRefused(409, f"tenant {name!r} is busy (state {status.state}); change {what} once it is ready")

    async def change_domain(self, name: str, domain: str | None, actor: str | None) -> Accepted:
        """Set (or with None remove) the tenant's custom domain; only its edge route changes."""
        async with self.pool.acquire() as conn, conn.transaction():
            await store.lock_tenant(conn, name)
            row, status = await self._live(conn, name)
            if row["custom_domain"] == domain and status.state != "failed":
                return await self._unchanged(conn, name, status)
            if domain and (owner := await store.domain_owner(conn, domain, name)):
                raise RequestRefused(409, f"custom domain {domain!r} already belongs to tenant {owner!r}")
            self._settled_or_busy(name, status, "its domain")
            generation = row["generation"] + 1
            try:
                await conn.execute("UPDATE tenants SET custom_domain = $2, generation = $3, updated_at = now() "
                                   "WHERE tenant_id = $1", name, domain, generation)
            except asyncpg.UniqueViolationError:  # a concurrent request claimed the domain
                raise RequestRefused(409, f"custom domain {domain!r} already belongs to another tenant") from None
            event = DomainChangeRequested(custom_domain=domain, requested_by=actor)
            return await self._request(conn, name, generation, "domain", event, status, None, domain, actor)

    async def change_idle_after(self, name: str, idle_after_s: int | None, actor: str | None) -> Accepted:
        """Set the tenant's idle period (None: the platform's default; 0: always on); only its
        runtime's registration changes. The desired value is the tenant row's from now on."""
        async with self.pool.acquire() as conn, conn.transaction():
            await store.lock_tenant(conn, name)
            row, status = await self._live(conn, name)
            if row["idle_after_s"] == idle_after_s and status.state != "failed":
                return await self._unchanged(conn, name, status)
            self._settled_or_busy(name, status, "its idle period")
            generation = row["generation"] + 1
            await conn.execute("UPDATE tenants SET idle_after_s = $2, generation = $3, updated_at = now() "
                               "WHERE tenant_id = $1", name, idle_after_s, generation)
            event = IdleAfterChangeRequested(idle_after_s=idle_after_s, requested_by=actor)
            return await self._request(conn, name, generation, "idle", event, status, None, None, actor)

    async def rollback(self, name: str, to: int | None, actor: str | None, retained: set[int] | None) -> Accepted:
        """Serve a retained release again as a new version (the builder copies its bytes).
        `to` None: the release before the live one. `retained`: versions the artifact store
        still holds (None: take the read model's word)."""
        async with self.pool.acquire() as conn, conn.transaction():
            await store.lock_tenant(conn, name)
            row, status = await self._live(conn, name)
            if not status.settled or status.version is None:
                raise RequestRefused(409, f"tenant {name!r} is busy or has no live release (state {status.state}); "
                                   "roll back once it is ready")
            known = await releases.read(conn, name)
            live = status.version
            kept = [r for r in known if retained is None or r["version"] in retained]
            target = next((r for r in kept if r["version"] == to), None) if to is not None else \
                next((r for r in kept if r["version"] < live and r["activated_at"]
                      and r["sha256"] != _sha(known, live)), None)
            if target is None:
                listed = ", ".join(str(r["version"]) for r in kept) or "none"
                what = f"release {to} is not a retained release" if to is not None else "there is no earlier release"
                raise RequestRefused(404 if to is not None else 409,
                              f"{what} of tenant {name!r} (retained: {listed}); see `hostplane tenant releases {name}`")
            if target["version"] == live or target["sha256"] == _sha(known, live):
                raise RequestRefused(409, f"release {target['version']}'s code is already live (release {live})")
            if problems := await self._rollback_problems(conn, target, known):
                raise RequestRefused(409, f"release {target['version']} cannot serve the current schema; the migrations "
                                   "since were not all additive: " + "; ".join(problems))
            generation = row["generation"] + 1
            await conn.execute("UPDATE tenants SET spec_sha256 = $2, generation = $3, updated_at = now() "
                               "WHERE tenant_id = $1", name, target["spec_sha256"], generation)
            event = RollbackRequested(to_version=target["version"], requested_by=actor)
            return await self._request(conn, name, generation, "rollback", event, status, target["spec_sha256"],
                                       None, actor)

    async def _rollback_problems(self, conn: Any, target: dict[str, Any], known: list[dict[str, Any]]) -> list[str]:
        """What makes the target's code unfit for the database's schema (spec.plan)."""
        schema = releases.schema_version(known)
        if schema is None:
            return []
        models = []
        for digest in (target["spec_sha256"], schema["spec_sha256"]):
            body = await inputs.load_spec_body(conn, digest)
            if body is None:
                return [f"the spec of release {target['version']} is not stored"]
            models.append(relational_model(load_app_spec(body)))
        problems = check_rollback(*models)
        return [f"{p} (migrated in release {schema['version']})" for p in problems]

    async def _migration_problems(self, conn: Any, row: Any, spec: AppSpec, allow_destructive: bool) -> list[str]:
        """What the migrator would refuse (spec.plan), against the current desired spec."""
        body = await inputs.load_spec_body(conn, row["spec_sha256"])
        try:
            current = load_app_spec(body) if body else None
        except InvalidAppSpec:  # stored under older rules: the migrator compares with the database
            current = None
        return check_update(current, spec, allow_destructive)

    async def _live(self, conn: Any, name: str) -> tuple[Any, Status]:
        row = await store.tenant_row(conn, name)
        if row is None:
            raise RequestRefused(404, f"no tenant named {name!r}; create it with POST /v1/tenants")
        if row["deleted_at"] is not None:
            raise RequestRefused(409, f"tenant {name!r} is deleted or being deleted")
        return row, await store.load_status(conn, name)

    async def _correlation(self, conn: Any, name: str, status: Status) -> uuid.UUID:
        return await conn.fetchval("SELECT correlation_id FROM tenant_requests WHERE tenant_id = $1 "
                                   "AND generation = $2", name, status.generation)

    async def _request(self, conn: Any, name: str, generation: int, kind: Kind, event: Event,
                       previous: Status | None, digest: str | None, domain: str | None,
                       actor: str | None) -> Accepted:
        incarnation = await conn.fetchval("SELECT incarnation FROM tenants WHERE tenant_id = $1", name)
        envelope = Envelope.new(event, tenant_id=name, producer=PRODUCER, incarnation=incarnation)
        await store.record_request(conn, name, generation, envelope.correlation_id, kind, digest, domain, actor,
                                   envelope)
        await store.save_status(conn, begin(previous, name, generation, kind))
        await add_to_outbox(conn, [envelope])
        log.info("tenant.request_accepted", tenant_id=name, kind=kind, generation=generation,
                 correlation_id=str(envelope.correlation_id))
        return Accepted(name, kind, generation, envelope.correlation_id)
