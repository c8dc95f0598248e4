"""The migrator's handler on fakes. Refusals that need no database: a release that cannot be
read, a release whose spec is not the one the event names, a tenant without credentials;
each is a MigrationFailed that names the problem, and the live pointer does not move. Then
the migration itself against the tenant database in memory: apply and go live, the same
release again, a stale replay, a destructive plan, a refused statement, a rollback."""

from __future__ import annotations

import contextlib
import io
import zipfile

import pytest

from artifacts.store import ArtifactStore
from spec.load import load_app_spec
from contracts.envelope import Envelope
from contracts.events_v1 import MigrationsApplied, TenantChanged
from contracts.failures_v1 import MigrationFailed
from events.failure import handled
from services.migrator.adapters import MigratorDeps
from services.migrator.handlers import on_tenant_changed
from services.resources.secret import TenantCredentials
from tests.support.migrator_fakes import FakeSchemas

TENANT = "acme"
SPEC = load_app_spec({"app": "T", "entities": {"task": {"fields": {"title": {"type": "string"}}}}})
OTHER = load_app_spec({"app": "U", "entities": {"task": {"fields": {"title": {"type": "text"}}}}})


class NoSecrets:
    async def read(self, names):
        return None


def zipped(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, body in files.items():  # a fixed date: the same files, the same bytes (writestr's
            zf.writestr(zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0)), body)  # is now's)
    return buf.getvalue()


def changed(store: ArtifactStore, version: int, files: dict[str, str], spec_sha256: str) -> Envelope:
    m = store.publish_release(TENANT, version, zipped(files))
    return Envelope.new(TenantChanged(version=version, artifact_path=f"{TENANT}/releases/{version}/app.pyz",
                                      sha256=m.sha256, size=m.size, spec_sha256=spec_sha256),
                        tenant_id=TENANT, producer="builder")


@pytest.fixture
def deps(tmp_path) -> MigratorDeps:
    return MigratorDeps(prefix="hostplane", secrets=NoSecrets(), store=ArtifactStore(tmp_path))  # type: ignore[arg-type]


async def failure(envelope, deps) -> MigrationFailed:
    [event] = await handled("migrator", on_tenant_changed, envelope, deps)  # as its consumer runs it
    assert isinstance(event, MigrationFailed) and not event.retryable
    assert deps.store.read_current(TENANT) is None
    return event


async def test_a_release_without_spec_json(deps):
    event = await failure(changed(deps.store, 1, {"__main__.py": ""}, SPEC.digest()), deps)
    assert event.stage == "artifact" and "has no readable spec.json" in event.error


async def test_a_missing_release(deps):
    env = changed(deps.store, 1, {"spec.json": SPEC.canonical_json()}, SPEC.digest())
    missing = env.model_copy(update={"data": env.data.model_copy(update={"version": 7})})
    event = await failure(missing, deps)
    assert (event.stage, event.version) == ("artifact", 7) and "has no release 7" in event.error


async def test_an_artifact_that_is_not_the_one_the_event_names(deps):
    env = changed(deps.store, 1, {"spec.json": SPEC.canonical_json()}, SPEC.digest())
    forged = env.model_copy(update={"data": env.data.model_copy(update={"sha256": "0" * 64})})
    event = await failure(forged, deps)
    assert event.stage == "artifact" and "digest" in event.error


async def test_a_spec_that_is_not_the_one_the_event_names(deps):
    event = await failure(changed(deps.store, 1, {"spec.json": OTHER.canonical_json()}, SPEC.digest()), deps)
    assert event.stage == "artifact"
    assert event.error == (f"release 1 carries spec {OTHER.digest()[:12]}, the event names {SPEC.digest()[:12]}")


async def test_an_invalid_spec_in_the_release(deps):
    event = await failure(changed(deps.store, 1, {"spec.json": '{"app": "x"}'}, SPEC.digest()), deps)
    assert event.stage == "artifact" and "entities: is required" in event.error


async def test_a_tenant_without_credentials(deps):
    event = await failure(changed(deps.store, 1, {"spec.json": SPEC.canonical_json()}, SPEC.digest()), deps)
    assert event.stage == "credentials" and "hostplane/tenants/acme" in event.error


# --- the migration itself, against the tenant database in memory (tests.support.migrator_fakes) ---

TWO_FIELDS = load_app_spec({"app": "T", "entities": {"task": {"fields": {"title": {"type": "string"},
                                                                          "done": {"type": "boolean"}}}}})
NO_TITLE = load_app_spec({"app": "T", "entities": {"task": {"fields": {"done": {"type": "boolean"}}}}})


class Secrets:
    async def read(self, names):
        return TenantCredentials.model_validate({
            "DATABASE_URL": "postgresql://t:pw@127.0.0.1/t", "DB_HOST": "127.0.0.1", "DB_PORT": "5432",
            "DB_NAME": "t_acme", "DB_USER": "t_acme", "DB_PASSWORD": "pw", "REDIS_URL": "redis://x",
            "CACHE_USER": "t-acme", "CACHE_PASSWORD": "pw", "CACHE_PREFIX": "acme:", "BUCKET": "b",
            "AWS_REGION": "us-east-1"})


@pytest.fixture
def db() -> FakeSchemas:
    return FakeSchemas()


@pytest.fixture
def live(tmp_path, db) -> MigratorDeps:
    return MigratorDeps(prefix="hostplane", secrets=Secrets(), store=ArtifactStore(tmp_path),  # type: ignore[arg-type]
                        schemas=db)  # type: ignore[arg-type]


def release(deps: MigratorDeps, version: int, spec, **update) -> Envelope:
    env = changed(deps.store, version, {"spec.json": spec.canonical_json()}, spec.digest())
    return env.model_copy(update={"data": env.data.model_copy(update=update)}) if update else env


async def migrate(envelope: Envelope, deps: MigratorDeps) -> list:
    return await handled("migrator", on_tenant_changed, envelope, deps)


async def test_a_first_release_creates_its_tables_records_the_ledger_and_goes_live(live, db):
    [applied] = await migrate(release(live, 1, SPEC), live)
    assert isinstance(applied, MigrationsApplied) and applied.version == 1 and len(applied.migrations) == 1
    assert any(s.startswith('CREATE TABLE "task"') for s in db.executed), db.executed
    assert (db.ledger[1].spec_sha256, db.ledger[1].released) == (SPEC.digest(), True)
    assert live.store.read_current(TENANT).version == 1


async def test_the_same_release_again_changes_nothing_and_a_replay_of_an_older_one_is_skipped(live, db):
    await migrate(release(live, 1, SPEC), live)
    generation = live.store.read_current(TENANT).generation
    executed = list(db.executed)
    [again] = await migrate(release(live, 1, SPEC), live)
    assert again == MigrationsApplied(version=1, migrations=[]) and db.executed == executed
    assert live.store.read_current(TENANT).generation == generation, "the pointer is not written again"
    await migrate(release(live, 2, TWO_FIELDS), live)
    old = release(live, 1, SPEC)
    assert await migrate(old, live) == [] and live.store.read_current(TENANT).version == 2
    assert db.sessions == 3, "the stale one never reaches the database"


async def test_a_destructive_plan_is_refused_unless_allowed_and_nothing_runs(live, db):
    await migrate(release(live, 1, TWO_FIELDS), live)
    executed = list(db.executed)
    [refused] = await migrate(release(live, 2, NO_TITLE), live)
    assert isinstance(refused, MigrationFailed) and (refused.stage, refused.version) == ("plan", 2)
    assert "allow-destructive" in refused.error and db.executed == executed and 2 not in db.ledger
    assert live.store.read_current(TENANT).version == 1, "the old release keeps serving"
    [applied] = await migrate(release(live, 3, NO_TITLE, allow_destructive=True), live)
    assert isinstance(applied, MigrationsApplied) and live.store.read_current(TENANT).version == 3


async def test_a_statement_the_database_refuses_is_migration_failed_naming_the_step(tmp_path):
    db = FakeSchemas(refuse='ADD COLUMN "done"')
    deps = MigratorDeps(prefix="hostplane", secrets=Secrets(), store=ArtifactStore(tmp_path),  # type: ignore[arg-type]
                        schemas=db)  # type: ignore[arg-type]
    await migrate(release(deps, 1, SPEC), deps)
    [failed] = await migrate(release(deps, 2, TWO_FIELDS), deps)
    assert isinstance(failed, MigrationFailed) and (failed.stage, failed.version) == ("apply", 2)
    assert "refused by the fake" in failed.error and list(db.ledger) == [1]
    assert deps.store.read_current(TENANT).version == 1


async def test_a_rollback_applies_no_ddl_and_keeps_the_schema_the_database_has(live, db):
    await migrate(release(live, 1, SPEC), live)
    await migrate(release(live, 2, TWO_FIELDS), live)
    executed = list(db.executed)
    [rolled] = await migrate(release(live, 3, SPEC, rollback_of=1), live)
    assert rolled == MigrationsApplied(version=3, migrations=[]) and db.executed == executed
    assert db.ledger[3].model == db.ledger[2].model, "the next update diffs against the real tables"



async def test_a_rollback_whose_code_needs_a_column_the_database_lacks_is_refused(live, db):
    await migrate(release(live, 1, SPEC), live)
    [blocked] = await migrate(release(live, 2, TWO_FIELDS, rollback_of=1), live)  # its code reads "done"
    assert isinstance(blocked, MigrationFailed) and blocked.stage == "rollback", blocked
    assert "cannot serve the current schema" in blocked.error and list(db.ledger) == [1]
    assert live.store.read_current(TENANT).version == 1


class NoticePool:
    """The control database as the pointer notice sees it: a pool of one recording connection."""

    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple] = []
        self.fail = fail

    @contextlib.asynccontextmanager
    async def acquire(self, timeout: float | None = None):
        if self.fail:
            raise OSError("control database away")
        yield self

    async def execute(self, sql: str, *args) -> None:
        self.sent.append(args)


async def test_the_pointer_move_is_announced_to_the_runtime_at_once(live):
    live.pool = NoticePool()
    await migrate(release(live, 1, SPEC), live)
    assert live.pool.sent == [("hostplane_pointer", "acme")]
    await migrate(release(live, 1, SPEC), live)  # the same release again: no move, no notice
    assert len(live.pool.sent) == 1


async def test_a_lost_notice_never_costs_the_release(live):
    live.pool = NoticePool(fail=True)
    [applied] = await migrate(release(live, 1, SPEC), live)
    assert applied.version == 1 and live.store.read_current("acme").version == 1
