"""The builder's rollback (a byte-identical copy of a retained release as a new version)
and release retention, on a real ArtifactStore in a temporary folder."""

from __future__ import annotations

from functools import partial
import hashlib
from pathlib import Path

import pytest

from artifacts.releases import prune_releases
from artifacts.store import ARTIFACT, ArtifactStore
from spec.load import load_app_spec
from contracts.envelope import Envelope
from contracts.events_v1 import RollbackRequested, TenantChanged
from contracts.failures_v1 import BuildFailed
from services.builder.adapters import BuilderDeps
from services.builder.codegen import generate, package
from services.builder.handlers import on_rollback_requested
from events.failure import handled

# The handler as its consumer runs it: a PermanentFailure becomes builder's failure event.
roll_back = partial(handled, "builder", on_rollback_requested)

SPEC = open("examples/tasks.yaml").read()


def artifact(extra: str = "") -> bytes:
    spec = load_app_spec(SPEC.replace("  task:\n", f"  task:\n    label: '{extra}'\n", 1) if extra else SPEC)
    return package(generate(spec))


class Recorded:
    """The API recorded every command these tests send (events.recorded is tested apart)."""

    async def unrecorded(self, envelope, fields):
        return None

    async def superseded(self, envelope):
        return None


@pytest.fixture
def deps(tmp_path: Path) -> BuilderDeps:
    return BuilderDeps("hp", inputs=Recorded(), store=ArtifactStore(tmp_path / "a"), static=None, retention=3)


def rollback(to: int) -> Envelope:
    return Envelope.new(RollbackRequested(to_version=to, requested_by="alice"), tenant_id="shop", producer="api")


async def test_rollback_copies_the_target_bytes_into_a_new_version_once(deps):
    store = deps.store
    one, two = package(generate(load_app_spec(SPEC))), artifact("v2")
    store.publish_release("shop", 1, one)
    store.publish_release("shop", 2, two)
    store.set_current("shop", 2)
    [changed] = await roll_back(rollback(1), deps)
    assert isinstance(changed, TenantChanged)
    assert (changed.version, changed.rollback_of, changed.previous_version) == (3, 1, 2)
    assert changed.sha256 == hashlib.sha256(one).hexdigest()
    assert (store.release_dir("shop", 3) / ARTIFACT).read_bytes() == one
    assert changed.spec_sha256 == load_app_spec(SPEC).digest()
    again = await roll_back(rollback(1), deps)  # redelivery: same release named again
    assert again == [changed]
    assert [m.version for m in store.releases("shop")] == [1, 2, 3]


async def test_rollback_to_a_missing_or_corrupt_release_fails_and_publishes_nothing(deps):
    store = deps.store
    store.publish_release("shop", 1, artifact())
    [failed] = await roll_back(rollback(7), deps)
    assert isinstance(failed, BuildFailed) and failed.stage == "rollback" and "not retained" in failed.error
    (store.release_dir("shop", 1) / ARTIFACT).write_bytes(b"tampered")
    [failed] = await roll_back(rollback(1), deps)
    assert isinstance(failed, BuildFailed) and "corrupt" in failed.error
    assert [m.version for m in store.releases("shop")] == [1]


def test_retention_keeps_the_newest_the_live_and_the_just_published(tmp_path: Path):
    store = ArtifactStore(tmp_path)
    for v in range(1, 8):
        store.publish_release("shop", v, f"bytes {v}".encode())
    store.set_current("shop", 2)  # an old release is live (e.g. the newest ones failed)
    gone = prune_releases(store, "shop", keep=3, published=7)
    assert gone == [1, 3, 4]
    assert [m.version for m in store.releases("shop")] == [2, 5, 6, 7]
    assert prune_releases(store, "shop", keep=3, published=7) == []  # convergent
    assert store.read_current("shop").version == 2
