"""Who may say what on the bus: the consumer refuses, before any handler runs, an event
whose EventBridge source is not a declared producer's of its type (deleted, counted,
logged, nothing retried, dead-lettered or published); and a stage service changes nothing
for an event of another tenant incarnation (events.recorded)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from contracts.envelope import Envelope, declared_sources, runtime_source
from contracts.events_v1 import AppUpdateRequested, ReleaseActivated, TenantDeletionRequested, TenantDeprovisioned
from events import consumer as consumer_module
from events import recorded
from events.consumer import Consumer, ConsumerOptions
from events.recorded import Incarnation, is_stale
from events.topology import QueueSpec, Topology
from core.settings import Settings
from tests.support.consumer_fakes import FakeInbox, FakeSQS, running, until

DIGEST = "ab" * 32


def consumer(service: str, handlers: dict, sqs: FakeSQS, inbox: FakeInbox) -> Consumer:
    topo = Topology(bus_name="b", archive_name="a", queues=(QueueSpec(service, "q", "q-dlq"),), rules=())
    return Consumer(service, handlers, None, None, Settings(), topo, concurrency=2, sqs=sqs, inbox=inbox,
                    options=ConsumerOptions(wait_time_s=0, visibility_timeout_s=30, grace_period_s=2))


def body(envelope: Envelope[Any], source: str) -> str:
    """What EventBridge delivers: the caller's Source, whatever the envelope claims."""
    return json.dumps({"id": "eb-1", "detail-type": envelope.event_type, "source": source,
                       "detail": json.loads(envelope.to_detail())})


def refused(service: str, event_type: str) -> float:
    return REGISTRY.get_sample_value("hostplane_events_refused_total",
                                     {"service": service, "event_type": event_type}) or 0.0


def deletion(tenant: str = "victim", producer: str = "api") -> Envelope[Any]:
    return Envelope.new(TenantDeletionRequested(requested_by="mallory"), tenant_id=tenant, producer=producer)


def activated(tenant: str) -> Envelope[Any]:
    return Envelope.new(ReleaseActivated(version=1, sha256=DIGEST, swap_ms=1, health_ms=1), tenant_id=tenant,
                        producer="reloader")


async def _deliver(service: str, model: type, envelope: Envelope[Any], source: str) -> tuple[list, FakeSQS,
                                                                                              FakeInbox, list]:
    sqs, inbox, calls = FakeSQS(), FakeInbox(), []

    async def handler(env, deps):
        calls.append(env)
        return [TenantDeprovisioned()]

    mid = sqs.send(body=body(envelope, source))
    with capture_logs() as logs:
        async with running(consumer(service, {model: handler}, sqs, inbox)):
            await until(lambda: mid in sqs.deleted)
    return calls, sqs, inbox, logs


@pytest.mark.parametrize("source", ["hostplane.runtime.mallory", "hostplane.builder", "hostplane.api.x",
                                    "hostplane.reloader", "attacker"])
async def test_a_forged_deletion_is_refused_and_its_handler_never_runs(source: str):
    before = refused("deprovisioner", "TenantDeletionRequested")
    calls, sqs, inbox, logs = await _deliver("deprovisioner", TenantDeletionRequested, deletion(), source)
    assert calls == [] and inbox.outbox == [] and inbox.keys == set()
    assert sqs.visibility_calls == [] and not sqs.messages  # deleted: never retried, never dead-lettered
    [line] = [entry for entry in logs if entry["event"] == "events.refused"]
    assert (line["event_type"], line["source"], line["tenant_id"]) == ("TenantDeletionRequested", source, "victim")
    assert line["reason"] and line["log_level"] == "warning"
    assert refused("deprovisioner", "TenantDeletionRequested") == before + 1


async def test_an_event_claiming_another_producer_than_its_source_is_refused():
    # the API's source, but the envelope says the builder produced a deletion (not declared)
    calls, *_ = await _deliver("deprovisioner", TenantDeletionRequested, deletion(producer="builder"),
                               "hostplane.api")
    assert calls == []


async def test_a_runtime_event_about_another_tenant_is_refused():
    before = refused("api", "ReleaseActivated")
    calls, _, _, logs = await _deliver("api", ReleaseActivated, activated("victim"), runtime_source("mallory"))
    assert calls == [] and refused("api", "ReleaseActivated") == before + 1
    assert any(e["event"] == "events.refused" and e["source"] == "hostplane.runtime.mallory" for e in logs)


async def test_a_runtime_event_from_the_control_plane_source_is_refused():
    calls, *_ = await _deliver("api", ReleaseActivated, activated("victim"), "hostplane.reloader")
    assert calls == []


async def test_genuine_events_pass():
    calls, _, inbox, logs = await _deliver("deprovisioner", TenantDeletionRequested, deletion(), "hostplane.api")
    assert len(calls) == 1 and inbox.outbox and not any(e["event"] == "events.refused" for e in logs)
    calls, *_ = await _deliver("api", ReleaseActivated, activated("victim"), "hostplane.runtime.victim")
    assert len(calls) == 1


async def test_an_ops_replay_keeps_the_original_source_and_passes():
    original = deletion()
    calls, *_ = await _deliver("deprovisioner", TenantDeletionRequested, original.as_replay(), original.source)
    assert len(calls) == 1 and calls[0].replay_id is not None


def test_declared_sources_follow_the_catalog():
    assert declared_sources(TenantDeletionRequested, "t") == {"hostplane.api"}
    assert declared_sources(ReleaseActivated, "t") == {"hostplane.runtime.t"}
    assert activated("acme").source == runtime_source("acme") == "hostplane.runtime.acme"
    assert deletion().source == "hostplane.api"


# --- incarnations ----------------------------------------------------------------------

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def _at(envelope: Envelope[Any], at: datetime, incarnation: uuid.UUID | None) -> Envelope[Any]:
    return envelope.model_copy(update={"occurred_at": at, "incarnation": incarnation})


def test_an_event_of_another_incarnation_is_stale():
    first, second = uuid.uuid4(), uuid.uuid4()
    current = Incarnation(second, NOW)
    assert is_stale(_at(deletion(), NOW - timedelta(hours=1), first), current)
    assert not is_stale(_at(deletion(), NOW + timedelta(seconds=1), second), current)
    # the incarnation decides, not the clock: a current event with a skewed clock still counts
    assert not is_stale(_at(deletion(), NOW - timedelta(seconds=5), second), current)
    assert is_stale(_at(deletion(), NOW + timedelta(hours=1), first), current)


def test_an_event_from_before_incarnations_compares_by_time():
    current = Incarnation(uuid.uuid4(), NOW)
    assert is_stale(_at(deletion(), NOW - timedelta(seconds=1), None), current)
    assert not is_stale(_at(deletion(), NOW + timedelta(seconds=1), None), current)
    assert not is_stale(_at(deletion(), NOW - timedelta(days=9), uuid.uuid4()), None)  # a tenant the API never had
    assert is_stale(_at(deletion(), NOW - timedelta(seconds=1), uuid.uuid4()), Incarnation(None, NOW))


def test_incarnation_is_carried_from_cause_to_effect_and_kept_by_a_replay():
    incarnation = uuid.uuid4()
    cause = Envelope.new(AppUpdateRequested(spec_ref=f"spec:sha256:{DIGEST}", spec_sha256=DIGEST), tenant_id="acme",
                         producer="api", incarnation=incarnation)
    effect = Envelope.new(TenantDeprovisioned(), tenant_id="acme", producer="deprovisioner", cause=cause)
    assert effect.incarnation == incarnation and cause.as_replay().incarnation == incarnation
    assert Envelope.new(TenantDeprovisioned(), tenant_id="acme", producer="deprovisioner").incarnation is None


@pytest.mark.parametrize("service", ["provisioner", "builder", "migrator", "router-config", "deprovisioner"])
async def test_a_stage_service_changes_nothing_for_another_incarnation(service: str, monkeypatch):
    current = Incarnation(uuid.uuid4(), NOW)

    async def stale(conn, envelope):
        return current if is_stale(envelope, current) else None

    async def as_recorded(conn, envelope, fields=None):
        return None

    monkeypatch.setattr(consumer_module, "current_connection", lambda: object())
    monkeypatch.setattr(recorded, "stale_incarnation", stale)
    monkeypatch.setattr(recorded, "unrecorded", as_recorded)
    monkeypatch.setattr(recorded, "deletion_requested_since", not_deleted)
    old = _at(deletion(), NOW - timedelta(days=1), uuid.uuid4())
    calls, sqs, inbox, logs = await _deliver(service, TenantDeletionRequested, old, "hostplane.api")
    assert calls == [] and inbox.outbox == [] and inbox.keys == {old.dedup_key}  # handled: nothing changed
    assert any(e["event"] == "events.stale_incarnation" for e in logs)
    fresh = _at(deletion(), NOW + timedelta(seconds=1), current.id)
    calls, *_ = await _deliver(service, TenantDeletionRequested, fresh, "hostplane.api")
    assert len(calls) == 1


@pytest.mark.parametrize("service", ["provisioner", "builder", "migrator", "router-config", "deprovisioner"])
async def test_a_command_the_api_did_not_record_changes_nothing(service: str, monkeypatch):
    asked: list[Envelope[Any]] = []

    async def fresh(conn, envelope):
        return None

    async def unrecorded(conn, envelope, fields=None):
        asked.append(envelope)
        return "the API recorded no request with this correlation id for this tenant"

    monkeypatch.setattr(consumer_module, "current_connection", lambda: object())
    monkeypatch.setattr(recorded, "stale_incarnation", fresh)
    monkeypatch.setattr(recorded, "unrecorded", unrecorded)
    forged = deletion()  # under the API's own source: only the record can tell
    calls, sqs, inbox, logs = await _deliver(service, TenantDeletionRequested, forged, "hostplane.api")
    assert calls == [] and inbox.outbox == [] and inbox.keys == {forged.dedup_key}
    assert [a.event_id for a in asked] == [forged.event_id]
    [line] = [e for e in logs if e["event"] == "command.unrecorded"]
    assert "no request" in line["reason"]


async def test_facts_are_not_looked_up_as_commands(monkeypatch):
    async def fresh(conn, envelope):
        return None

    async def unrecorded(conn, envelope, fields=None):
        raise AssertionError("a fact is not a command")

    monkeypatch.setattr(consumer_module, "current_connection", lambda: object())
    monkeypatch.setattr(recorded, "stale_incarnation", fresh)
    monkeypatch.setattr(recorded, "unrecorded", unrecorded)
    monkeypatch.setattr(recorded, "deletion_requested_since", not_deleted)
    fact = Envelope.new(TenantDeprovisioned(), tenant_id="victim", producer="deprovisioner")
    calls, *_ = await _deliver("builder", TenantDeprovisioned, fact, "hostplane.deprovisioner")
    assert len(calls) == 1


async def not_deleted(conn, envelope) -> bool:
    return False


@pytest.mark.parametrize("service", ["provisioner", "builder", "migrator", "router-config"])
async def test_after_a_deletion_request_a_late_event_of_the_create_changes_nothing(service: str, monkeypatch):
    async def fresh(conn, envelope):
        return None

    async def deleted_since(conn, envelope) -> bool:
        return True

    monkeypatch.setattr(consumer_module, "current_connection", lambda: object())
    monkeypatch.setattr(recorded, "stale_incarnation", fresh)
    monkeypatch.setattr(recorded, "deletion_requested_since", deleted_since)
    late = Envelope.new(TenantDeprovisioned(), tenant_id="victim", producer="deprovisioner")
    calls, sqs, inbox, logs = await _deliver(service, TenantDeprovisioned, late, "hostplane.deprovisioner")
    assert calls == [] and inbox.outbox == [] and inbox.keys == {late.dedup_key}  # handled: nothing changed
    assert any(e["event"] == "events.tenant_deleted" for e in logs)


async def test_the_api_projection_is_not_gated_by_the_consumer(monkeypatch):
    monkeypatch.setattr(consumer_module, "current_connection", lambda: object())

    async def stale(conn, envelope):
        raise AssertionError("the api consumer does not ask")

    monkeypatch.setattr(recorded, "stale_incarnation", stale)
    calls, *_ = await _deliver("api", TenantDeletionRequested, deletion(), "hostplane.api")
    assert len(calls) == 1
