"""Replay semantics (docs/replay.md) without servers: every event is a fact or a command;
what a replay causes carries its mark; a replayed command yields to a newer request; an old
TenantChanged never moves the live pointer back; the relay rations replays; the consumer
serves tenants fairly."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from artifacts.store import ArtifactStore
from contracts.catalog import KINDS, command_types, kind_of
from contracts.envelope import Envelope
from contracts.registry import registered_events
from contracts.events_v1 import (AppUpdateRequested, MigrationsApplied, RollbackRequested, TenantChanged,
                                 TenantRequested)
from events import recorded
from events.fairness import TenantSlots
from events.outbox import OutboxRelay
from services.migrator.adapters import MigratorDeps
from services.migrator.handlers import on_tenant_changed
from tests.support.consumer_fakes import FakeInbox, FakeSQS, make, ping, running, until


def test_every_registered_event_is_a_fact_or_a_command():
    for model in registered_events():
        assert "kind" in vars(model), f"{model.__name__} declares no kind of its own"
        assert model.kind in KINDS, model.__name__
    # commands are exactly the intents the API records (and only the API produces)
    assert command_types() == sorted(recorded.KIND_OF.keys() - {"TenantProvisioned", "TenantChanged"})
    for model in registered_events():
        assert (model.kind == "command") == (model.producers == ("api",)), model.__name__
    assert kind_of("TenantChanged") == "fact" and kind_of("RollbackRequested") == "command"
    with pytest.raises(ValueError):
        kind_of("NoSuchEvent")


def test_what_a_replay_causes_carries_its_replay_id():
    original = Envelope.new(TenantRequested.model_construct(), tenant_id="acme", producer="api")
    live_effect = Envelope.new(MigrationsApplied(version=1, migrations=[]), tenant_id="acme",
                               producer="migrator", cause=original)
    assert live_effect.replay_id is None
    replayed = original.as_replay()
    effect = Envelope.new(MigrationsApplied(version=1, migrations=[]), tenant_id="acme",
                          producer="migrator", cause=replayed)
    assert effect.replay_id == replayed.replay_id and effect.event_id != replayed.event_id
    assert effect.causation_id == original.event_id and effect.dedup_key != live_effect.dedup_key
    again = Envelope.new(MigrationsApplied(version=1, migrations=[]), tenant_id="acme", producer="api",
                         cause=effect)
    assert again.replay_id == replayed.replay_id  # down the whole chain


class FakeDb:
    def __init__(self, newer: str | None) -> None:
        self.newer, self.queries = newer, []

    async def fetchval(self, sql: str, *args: Any) -> Any:
        if "to_regclass" in sql:
            return True
        self.queries.append(args)
        return self.newer


def _command(model, **data) -> Envelope[Any]:
    return Envelope.new(model.model_construct(**data), tenant_id="acme", producer="api")


async def test_a_replayed_command_yields_to_a_newer_request_of_its_kind():
    update = _command(AppUpdateRequested)
    db = FakeDb("rollback")
    assert await recorded.replay_superseded(db, update) is None and db.queries == []  # live delivery
    assert await recorded.replay_superseded(db, update.as_replay()) == "rollback"
    [(tenant, correlation, kinds)] = db.queries
    assert tenant == "acme" and correlation == update.correlation_id and set(kinds) == set(recorded.BUILD_KINDS)
    assert await recorded.replay_superseded(FakeDb(None), update.as_replay()) is None  # still the latest
    db = FakeDb("update")
    await recorded.replay_superseded(db, _command(RollbackRequested, to_version=1).as_replay())
    assert "domain" not in db.queries[0][2]  # a domain change does not supersede code
    db = FakeDb(None)
    await recorded.replay_superseded(db, _command(TenantRequested).as_replay())
    assert {"update", "rollback", "delete", "domain"} <= set(db.queries[0][2])
    fact = Envelope.new(MigrationsApplied(version=1, migrations=[]), tenant_id="acme", producer="migrator")
    db = FakeDb("update")
    assert await recorded.replay_superseded(db, fact.as_replay()) is None and db.queries == []


async def test_a_replayed_old_tenant_changed_never_moves_the_live_pointer_back(tmp_path):
    store = ArtifactStore(tmp_path)
    deps = MigratorDeps(prefix="hostplane", secrets=None, store=store)  # type: ignore[arg-type]
    for version in (1, 2, 3):
        store.publish_release("acme", version, b"PK\x05\x06" + b"\0" * 18)
    store.set_current("acme", 3, correlation_id=str(uuid.uuid4()))
    old = Envelope.new(TenantChanged(version=1, artifact_path="acme/releases/1/app.pyz", sha256="0" * 64,
                                     size=1, spec_sha256="0" * 64), tenant_id="acme", producer="builder")
    # release 1's artifact does not even match: it is never read, no MigrationFailed either
    assert await on_tenant_changed(old.as_replay(), deps) == []
    assert await on_tenant_changed(old, deps) == []
    assert store.read_current("acme").version == 3


def test_the_relay_rations_replays_with_a_token_bucket():
    relay = OutboxRelay(None, None, replay_rate=10)  # type: ignore[arg-type]
    assert relay._replay_budget() == 10  # one second's worth to start
    relay._tokens -= 10
    assert relay._replay_budget() == 0
    relay._refilled -= 0.35  # 0.35 s later: 3 more tokens
    assert relay._replay_budget() == 3
    relay._refilled -= 60  # never more than a second's worth
    assert relay._replay_budget() == 10
    assert OutboxRelay(None, None, replay_rate=0)._replay_budget() == 100  # type: ignore[arg-type]


async def test_tenant_slots_cap_each_tenant_and_count_the_waiting():
    slots, inside, peak = TenantSlots(1), {"a": 0, "b": 0}, {"a": 0, "b": 0}

    async def work(tenant: str) -> None:
        try:
            async with slots.slot(tenant):
                inside[tenant] += 1
                peak[tenant] = max(peak[tenant], inside[tenant])
                await asyncio.sleep(0.01)
                inside[tenant] -= 1
        finally:
            slots.release(tenant)

    for tenant in ["a"] * 5 + ["b"] * 3:
        slots.claim(tenant)
    assert slots.waiting == 4 + 2 and slots.busy("a") == 5  # known before any task runs
    await asyncio.gather(*(work("a") for _ in range(5)), *(work("b") for _ in range(3)))
    assert peak == {"a": 1, "b": 1} and slots.waiting == 0
    assert slots.busy("a") == 0 and slots._sems == {}


async def test_one_tenants_backlog_does_not_delay_another_tenant():
    """40 messages of a busy tenant, then one of a bystander: the bystander's is handled
    while the backlog is still being worked off, not after it."""
    sqs, inbox, done = FakeSQS(), FakeInbox(), []

    async def handler(env, deps):
        await asyncio.sleep(0.03)
        done.append(env.tenant_id)

    for n in range(40):
        sqs.send(ping("hog", n))
    sqs.send(ping("bystander"))
    started = time.monotonic()
    consumer = make(handler, sqs, inbox)
    async with running(consumer):
        await until(lambda: "bystander" in done)
        waited = time.monotonic() - started
        assert done.index("bystander") <= 3, f"bystander handled after {done.index('bystander')} backlog messages"
        assert consumer._slots.busy("hog") > 10  # the backlog is in hand, waiting its turn
        await until(lambda: len(done) == 41, timeout=10)
    assert waited < 1.0 and done.count("hog") == 40


async def test_without_the_per_tenant_cap_the_bystander_waits_for_the_backlog():
    """The contrast (what the consumer did before the cap): every slot holds a message of
    the busy tenant, serialised by its lock, and the bystander comes after most of them."""
    sqs, inbox, done = FakeSQS(), FakeInbox(), []

    async def handler(env, deps):
        await asyncio.sleep(0.02)
        done.append(env.tenant_id)

    for n in range(30):
        sqs.send(ping("hog", n))
    sqs.send(ping("bystander"))
    async with running(make(handler, sqs, inbox, per_tenant_inflight=100)):
        await until(lambda: "bystander" in done, timeout=10)
    assert done.index("bystander") > 20
