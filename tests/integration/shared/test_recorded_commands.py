"""events.recorded against the API's real tables: a command is honoured only as the API
recorded it (same request, kind, event, payload), and each tenant's incarnation is the one
its latest create recorded. The builder, given an unrecorded command, builds nothing."""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg
import pytest

from artifacts import inputs
from artifacts.store import ArtifactStore
from contracts.app_spec import spec_ref
from spec.load import load_app_spec
from contracts.envelope import Envelope
from contracts.registry import parse_envelope
from contracts.events_v1 import AppUpdateRequested, RollbackRequested, TenantChanged, TenantProvisioned
from events import recorded
from services.api.commands import TenantCommands
from services.builder.adapters import BuilderDeps, StoredInputs
from services.builder.handlers import on_app_update_requested, on_rollback_requested, on_tenant_provisioned
from tests.support.events import sample

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120),
              pytest.mark.parametrize("running_platform", ["moto"], indirect=True)]

SPEC = load_app_spec(Path("examples/tasks.yaml").read_text())
OTHER = load_app_spec(Path("examples/tasks.yaml").read_text().replace("app: Tasks", "app: Tasks two"))


async def created(pool: asyncpg.Pool, name: str) -> Envelope:
    await TenantCommands(pool).create(name, SPEC, None, "alice")
    detail = await pool.fetchval("SELECT detail::text FROM outbox WHERE tenant_id = $1 AND event_type = "
                                 "'TenantRequested' ORDER BY seq DESC LIMIT 1", name)
    return parse_envelope(detail)


def provisioned(request: Envelope, **change) -> Envelope:
    data = sample(TenantProvisioned).model_copy(update={"spec_ref": request.data.spec_ref,
                                                        "spec_sha256": request.data.spec_sha256,
                                                        "static_ref": request.data.static_ref, **change})
    return Envelope.new(data, tenant_id=request.tenant_id, producer="provisioner", cause=request)


def update(tenant: str, spec=OTHER, **extra) -> Envelope:
    digest = spec.digest()
    return Envelope.new(AppUpdateRequested(spec_ref=spec_ref(digest), spec_sha256=digest, **extra), tenant_id=tenant,
                        producer="api")


async def test_the_create_and_its_provisioned_fact_are_recorded_exactly(api_store_pool):
    request = await created(api_store_pool, "acme")
    fields = ("spec_ref", "spec_sha256", "static_ref")
    async with api_store_pool.acquire() as conn:
        assert await recorded.unrecorded(conn, request, fields) is None
        assert await recorded.unrecorded(conn, provisioned(request), fields) is None
        other = OTHER.digest()
        swapped = provisioned(request, spec_ref=spec_ref(other), spec_sha256=other)
        assert "differs" in await recorded.unrecorded(conn, swapped, fields)
        static = provisioned(request, static_ref="source:sha256:" + "cd" * 32)
        assert "static_ref differs" in await recorded.unrecorded(conn, static, fields)
        # the API's own event id is part of the record: a look-alike with another id is not it
        twin = request.model_copy(update={"event_id": uuid.uuid4()})
        assert "another event" in await recorded.unrecorded(conn, twin, fields)


async def test_commands_the_api_never_recorded_are_named(api_store_pool):
    request = await created(api_store_pool, "acme")
    async with api_store_pool.acquire() as conn:
        assert "no request" in await recorded.unrecorded(conn, update("acme"), ("spec_sha256",))
        # riding on the create's correlation id does not make an update
        riding = update("acme").model_copy(update={"correlation_id": request.correlation_id})
        assert "is a create, not a update" in await recorded.unrecorded(conn, riding, ("spec_sha256",))
        # allow_destructive on a build of the create: the create never asked for it
        changed = Envelope.new(sample(TenantChanged).model_copy(update={"allow_destructive": True}),
                               tenant_id="acme", producer="builder", cause=request)
        assert "allow_destructive differs" in await recorded.unrecorded(conn, changed, ("allow_destructive",))
        # a tenant the API never had: nothing to compare (hostplane demo, handler tests)
        assert await recorded.unrecorded(conn, update("ghost"), ("spec_sha256",)) is None


async def test_each_create_is_a_new_incarnation_carried_by_every_request(api_store_pool):
    first = await created(api_store_pool, "acme")
    await TenantCommands(api_store_pool).delete("acme", "alice")
    async with api_store_pool.acquire() as conn:
        current = await recorded.current_incarnation(conn, "acme")
        assert current.id == first.incarnation is not None
        deletion = parse_envelope(await conn.fetchval(
            "SELECT detail::text FROM outbox WHERE event_type = 'TenantDeletionRequested'"))
        assert deletion.incarnation == first.incarnation
        assert await recorded.stale_incarnation(conn, first) is None
        assert await recorded.stale_incarnation(conn, deletion) is None
        # created again (what TenantCommands.create writes once the deletion finished)
        await conn.execute("UPDATE tenants SET incarnation = gen_random_uuid(), created_at = now(), "
                           "deleted_at = NULL WHERE tenant_id = 'acme'")
        assert (await recorded.stale_incarnation(conn, deletion)).id != first.incarnation
        assert await recorded.stale_incarnation(conn, first) is not None
        history = deletion.model_copy(update={"incarnation": None})  # from before incarnations: by time
        assert await recorded.stale_incarnation(conn, history) is not None
        fresh = Envelope.new(sample(TenantProvisioned), tenant_id="acme", producer="provisioner")
        assert await recorded.stale_incarnation(conn, fresh) is None


async def test_the_builder_builds_nothing_the_api_did_not_record(api_store_pool, tmp_path):
    request = await created(api_store_pool, "acme")
    deps = BuilderDeps("hp", inputs=StoredInputs(api_store_pool), store=ArtifactStore(tmp_path), static=None)  # type: ignore[arg-type]
    other = OTHER.digest()
    async with api_store_pool.acquire() as conn:
        await inputs.store_spec(conn, other, OTHER.canonical_json())  # stored, as an attacker's upload would be
    assert await on_app_update_requested(update("acme", allow_destructive=True), deps) == []
    assert await on_tenant_provisioned(provisioned(request, spec_ref=spec_ref(other), spec_sha256=other), deps) == []
    rollback = Envelope.new(RollbackRequested(to_version=1), tenant_id="acme", producer="api")
    assert await on_rollback_requested(rollback, deps) == []
    assert deps.store.releases("acme") == []


async def test_a_command_a_newer_request_replaced_is_no_longer_carried_out(api_store_pool, tmp_path):
    request = await created(api_store_pool, "acme")
    async with api_store_pool.acquire() as conn:
        assert await recorded.superseded(conn, request) is None
        assert await recorded.superseded(conn, provisioned(request)) is None
    await TenantCommands(api_store_pool).delete("acme", "alice")
    async with api_store_pool.acquire() as conn:
        assert await recorded.superseded(conn, request) == "delete"
    # a late or replayed TenantProvisioned of the deleted tenant builds nothing (no orphan artifacts)
    deps = BuilderDeps("hp", inputs=StoredInputs(api_store_pool), store=ArtifactStore(tmp_path), static=None)  # type: ignore[arg-type]
    assert await on_tenant_provisioned(provisioned(request), deps) == []
    assert deps.store.releases("acme") == []


async def test_the_consumer_s_whole_command_check(api_store_pool):
    request = await created(api_store_pool, "acme")
    await TenantCommands(api_store_pool).delete("acme", "alice")
    async with api_store_pool.acquire() as conn:
        deletion = parse_envelope(await conn.fetchval(
            "SELECT detail::text FROM outbox WHERE event_type = 'TenantDeletionRequested'"))
        assert await recorded.unrecorded(conn, request) is None
        assert await recorded.unrecorded(conn, deletion) is None
        assert await recorded.unrecorded(conn, deletion.as_replay()) is None  # an ops replay is the same command
        altered = deletion.model_copy(update={"data": deletion.data.model_copy(update={"requested_by": "mallory"})})
        assert "requested_by differs" in await recorded.unrecorded(conn, altered)
        forged = Envelope.new(deletion.data, tenant_id="acme", producer="api")  # a fresh deletion nobody asked for
        assert "no request" in await recorded.unrecorded(conn, forged)


async def test_after_a_deletion_request_only_the_deletions_own_events_act(api_store_pool):
    """A create still provisioning when the delete came finishes with a TenantProvisioned:
    no stage acts on it (router-config would route the tenant again, and the deprovisioner
    wait forever for its traffic to stop); the deletion's own events act."""
    from events.admission import skip_reason

    request = await created(api_store_pool, "acme")
    late = provisioned(request)
    async with api_store_pool.acquire() as conn:
        assert not await recorded.deletion_requested_since(conn, late)
    await TenantCommands(api_store_pool).delete("acme", "alice")
    async with api_store_pool.acquire() as conn:
        deletion = parse_envelope(await conn.fetchval(
            "SELECT detail::text FROM outbox WHERE event_type = 'TenantDeletionRequested'"))
        assert await recorded.deletion_requested_since(conn, request)
        for service in ("provisioner", "builder", "migrator", "router-config"):
            assert await skip_reason(service, conn, late) == "tenant_deleted", service
        assert await skip_reason("router-config", conn, deletion) is None
        assert await skip_reason("deprovisioner", conn, deletion) is None
        assert await skip_reason("api", conn, late) is None  # the projection folds every event
