"""Migrator handler refusals that need no database: a release that cannot be read, a
release whose spec is not the one the event names, a tenant without credentials. Each
is a MigrationFailed that names the problem, and the live pointer does not move."""

from __future__ import annotations

import io
import zipfile

import pytest

from artifacts.store import ArtifactStore
from spec.load import load_app_spec
from contracts.envelope import Envelope
from contracts.events_v1 import TenantChanged
from contracts.failures_v1 import MigrationFailed
from events.failure import handled
from services.migrator.adapters import MigratorDeps
from services.migrator.handlers import on_tenant_changed

TENANT = "acme"
SPEC = load_app_spec({"app": "T", "entities": {"task": {"fields": {"title": {"type": "string"}}}}})
OTHER = load_app_spec({"app": "U", "entities": {"task": {"fields": {"title": {"type": "text"}}}}})


class NoSecrets:
    async def read(self, names):
        return None


def zipped(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, body in files.items():
            zf.writestr(name, body)
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
