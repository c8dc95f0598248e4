"""The migrator handler on a real tenant (provisioned by the provisioner on real PostgreSQL
and the emulator): spec evolution keeps the rows, runs as the tenant's role, a replay
changes nothing, a failing migration leaves schema and live release exactly as before,
a destructive change needs the flag."""

from __future__ import annotations

import copy
import io
import zipfile
from collections.abc import AsyncIterator
from functools import partial

import pytest

from events.failure import handled
from spec.load import load_app_spec
from contracts.envelope import Envelope
from contracts.events_v1 import MigrationsApplied, TenantChanged
from contracts.failures_v1 import MigrationFailed
from services.migrator import adapters
from services.migrator.adapters import MigratorDeps, bootstrap
from services.migrator.handlers import on_tenant_changed
from services.provisioner.handlers import on_tenant_requested
from tests.support.bus_harness import publish, wait_for_event
from tests.support.events import requested
from tests.support.spec_versions import growing_spec

# The handlers as their consumers run them: a PermanentFailure becomes the service's failure event.
migrate = partial(handled, "migrator", on_tenant_changed)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120),
              pytest.mark.parametrize("running_platform", ["moto"], indirect=True)]

def release(deps: MigratorDeps, tenant: str, number: int, spec: dict, *, allow_destructive: bool = False,
            previous: int | None = None) -> Envelope[TenantChanged]:
    """Publish release `number` (a zip with spec.json, as the builder does) and its TenantChanged."""
    app = load_app_spec(spec)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(zipfile.ZipInfo("spec.json", (2026, 1, 1, 0, 0, 0)), app.canonical_json())
        zf.writestr(zipfile.ZipInfo("__main__.py", (2026, 1, 1, 0, 0, 0)), "")
    manifest = deps.store.publish_release(tenant, number, buf.getvalue())
    return Envelope.new(TenantChanged(
        version=number, artifact_path=f"{tenant}/releases/{number}/app.pyz", sha256=manifest.sha256,
        size=manifest.size, spec_sha256=app.digest(), previous_version=previous,
        allow_destructive=allow_destructive), tenant_id=tenant, producer="builder")


@pytest.fixture
async def deps(running_platform) -> AsyncIterator[MigratorDeps]:
    d = await bootstrap(running_platform.settings)
    try:
        yield d
    finally:
        await d.aclose()


@pytest.fixture
async def db(res, tenant, deps):
    """A provisioned tenant; yields a connection as the tenant's own role."""
    await on_tenant_requested(requested(tenant), res)
    conn = await adapters.connect_as_tenant(await deps.secrets.read(deps.names(tenant)))
    try:
        yield conn
    finally:
        await conn.close()


async def snapshot(conn) -> dict:
    """Everything a migration can change in the tenant database."""
    columns = await conn.fetch(
        "SELECT table_name, column_name, data_type, is_nullable, column_default FROM information_schema.columns "
        "WHERE table_schema = 'public' ORDER BY 1, 2")
    constraints = await conn.fetch(
        "SELECT conrelid::regclass::text AS t, conname, pg_get_constraintdef(oid) AS def FROM pg_constraint "
        "WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2")
    ledger = await conn.fetch(f"SELECT version, spec_sha256, released_at FROM {adapters.LEDGER} ORDER BY 1")
    return {"columns": [tuple(r) for r in columns], "constraints": [tuple(r) for r in constraints],
            "ledger": [tuple(r) for r in ledger]}


async def apply(deps, tenant, number, spec, **kwargs):
    return await migrate(release(deps, tenant, number, spec, **kwargs), deps)


async def test_spec_evolution_keeps_every_row_and_runs_as_the_tenant_role(deps, tenant, db):
    [first] = await apply(deps, tenant, 1, growing_spec(1))
    assert isinstance(first, MigrationsApplied) and first.version == 1 and len(first.migrations) == 1
    assert deps.store.read_current(tenant).version == 1
    await db.execute("INSERT INTO task (title) VALUES ('write tests'), ('ship')")
    for n in (2, 3, 4):
        [event] = await apply(deps, tenant, n, growing_spec(n), previous=n - 1)
        assert isinstance(event, MigrationsApplied), event
        assert event.version == n and event.migrations[0].startswith(f"v{n}-")
        assert deps.store.read_current(tenant).version == n
    rows = await db.fetch("SELECT title, done, owner, priority FROM task ORDER BY id")
    assert [tuple(r) for r in rows] == [("write tests", False, None, 3), ("ship", False, None, 3)]
    person = await db.fetchval("INSERT INTO person (name) VALUES ('ada') RETURNING id")
    await db.execute("UPDATE task SET owner = $1 WHERE title = 'ship'", person)
    owners = await db.fetch("SELECT tablename, tableowner FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
    role = deps.names(tenant).db_role
    assert [tuple(r) for r in owners] == [(adapters.LEDGER, role), ("person", role), ("task", role)]
    assert [r["version"] for r in await db.fetch(f"SELECT version FROM {adapters.LEDGER} ORDER BY 1")] == [1, 2, 3, 4]


async def test_a_replay_changes_nothing(deps, tenant, db):
    await apply(deps, tenant, 1, growing_spec(1))
    v2 = release(deps, tenant, 2, growing_spec(2))
    [applied] = await migrate(v2, deps)
    before, pointer = await snapshot(db), deps.store.read_current(tenant)
    [again] = await migrate(v2, deps)
    assert again == MigrationsApplied(version=2, migrations=[]) and applied.migrations
    assert await snapshot(db) == before
    assert deps.store.read_current(tenant) == pointer, "same generation: the reloader sees no news"
    stale = release(deps, tenant, 1, growing_spec(1))  # the same bytes: v1 republished is a no-op
    assert await migrate(stale, deps) == [], "an older version never goes live again by replay"
    assert await snapshot(db) == before and deps.store.read_current(tenant) == pointer


async def test_a_crash_before_the_release_is_marked_live_is_finished_by_the_redelivery(deps, tenant, db,
                                                                                       monkeypatch):
    await apply(deps, tenant, 1, growing_spec(1))
    v2 = release(deps, tenant, 2, growing_spec(2))
    real = deps.store.set_current

    def dies(*args, **kwargs):
        raise OSError("EFS went away")

    monkeypatch.setattr(deps.store, "set_current", dies)
    with pytest.raises(OSError):
        await migrate(v2, deps)
    assert deps.store.read_current(tenant).version == 1
    monkeypatch.setattr(deps.store, "set_current", real)
    [event] = await migrate(v2, deps)
    assert event == MigrationsApplied(version=2, migrations=[])  # migrated before the crash
    assert deps.store.read_current(tenant).version == 2
    assert (await snapshot(db))["ledger"][-1][2] is not None


async def test_a_failing_migration_leaves_schema_and_live_release_as_before(deps, tenant, db):
    await apply(deps, tenant, 1, growing_spec(1))
    await apply(deps, tenant, 2, growing_spec(2))
    await db.execute("INSERT INTO task (title) VALUES ('a title of thirty-two characters')")
    before, pointer = await snapshot(db), deps.store.read_current(tenant)
    tighter = growing_spec(3)  # adds a column and a foreign key first, then a limit existing rows break
    tighter["entities"]["task"]["fields"]["title"]["max_length"] = 10
    [failed] = await apply(deps, tenant, 3, tighter)
    assert isinstance(failed, MigrationFailed) and failed.stage == "apply" and failed.version == 3
    assert "task_title_max_length" in failed.error and "23514" in failed.error and not failed.retryable
    assert await snapshot(db) == before
    assert deps.store.read_current(tenant) == pointer
    assert await db.fetchval("SELECT count(*) FROM task") == 1
    [fixed] = await apply(deps, tenant, 4, growing_spec(3))  # the next good version migrates from v2
    assert isinstance(fixed, MigrationsApplied) and deps.store.read_current(tenant).version == 4


async def test_a_destructive_change_needs_the_flag(deps, tenant, db):
    await apply(deps, tenant, 1, growing_spec(1))
    await db.execute("INSERT INTO task (title, done) VALUES ('keep me', TRUE)")
    before, pointer = await snapshot(db), deps.store.read_current(tenant)
    without_done = copy.deepcopy(growing_spec(1))
    del without_done["entities"]["task"]["fields"]["done"]
    [refused] = await apply(deps, tenant, 2, without_done)
    assert isinstance(refused, MigrationFailed) and refused.stage == "plan"
    assert refused.error == "entities.task.fields.done: removing a field deletes its data; send --allow-destructive"
    assert await snapshot(db) == before and deps.store.read_current(tenant) == pointer
    [applied] = await apply(deps, tenant, 3, without_done, allow_destructive=True)
    assert isinstance(applied, MigrationsApplied) and deps.store.read_current(tenant).version == 3
    columns = await db.fetch("SELECT column_name FROM information_schema.columns WHERE table_name = 'task'")
    assert "done" not in {r["column_name"] for r in columns}
    assert await db.fetchval("SELECT title FROM task") == "keep me"


async def test_the_running_migrator_consumes_tenant_changed_from_the_bus(res, tenant, deps,
                                                                         running_platform):
    home = running_platform.settings.home_dir
    assert (home / "run" / "migrator.ready").exists()
    pool = res.records.pool
    await publish(pool, requested(tenant))
    await wait_for_event(pool, tenant, "TenantProvisioned")
    changed = release(deps, tenant, 1, growing_spec(1))
    await publish(pool, changed)
    applied = await wait_for_event(pool, tenant, "MigrationsApplied")
    assert applied.producer == "migrator" and applied.causation_id == changed.event_id
    assert deps.store.read_current(tenant).version == 1
    secret = (await deps.secrets.read(deps.names(tenant))).env()["DB_PASSWORD"]
    assert tenant in (home / "logs" / "migrator.log").read_text(errors="replace")
    assert secret not in (home / "logs" / "migrator.log").read_text(errors="replace")


async def test_a_table_held_by_the_live_app_is_retried_not_failed(deps, tenant, db, monkeypatch):
    import asyncpg

    monkeypatch.setattr(adapters, "LOCK_TIMEOUT", "200ms")
    await apply(deps, tenant, 1, growing_spec(1))
    before, pointer = await snapshot(db), deps.store.read_current(tenant)
    v3 = release(deps, tenant, 2, growing_spec(3))
    app = await adapters.connect_as_tenant(await deps.secrets.read(deps.names(tenant)))
    try:
        async with app.transaction():
            await app.execute("LOCK TABLE task IN ACCESS SHARE MODE")  # a long read by the app
            with pytest.raises(asyncpg.LockNotAvailableError):
                await migrate(v3, deps)  # the consumer redelivers it later
            assert await snapshot(db) == before and deps.store.read_current(tenant) == pointer
    finally:
        await app.close()
    [event] = await migrate(v3, deps)
    assert isinstance(event, MigrationsApplied) and deps.store.read_current(tenant).version == 2
